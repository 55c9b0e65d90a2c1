"""``/tasks``: start the tasks and read their results, in JSON."""

from __future__ import annotations

from flask import Blueprint, request

from flask_taskq import AsyncResult

from . import tasks

bp = Blueprint("tasks", __name__, url_prefix="/tasks")


@bp.get("/result/<id>")
def result(id: str) -> dict[str, object]:
    """Whether the task is ready and whether it succeeded (``None`` until it is ready);
    ``value`` is its return value once ready, before that what it reported (PROGRESS
    meta) or ``None``."""
    outcome = AsyncResult(id)
    ready = outcome.ready()
    return {
        "ready": ready,
        "successful": outcome.successful() if ready else None,
        "value": outcome.get() if ready else outcome.result,
    }


@bp.post("/add")
def add() -> dict[str, object]:
    a = request.form.get("a", type=int)
    b = request.form.get("b", type=int)
    return {"result_id": tasks.add.delay(a, b).id}


@bp.post("/block")
def block() -> dict[str, object]:
    return {"result_id": tasks.block.delay().id}


@bp.post("/process")
def process() -> dict[str, object]:
    return {"result_id": tasks.process.delay(total=request.form.get("total", type=int)).id}
