"""The tasks of ``tests.apps.migration_app``: imported lazily by its views, and by the
worker through ``TASKQ_IMPORTS`` (never by the app factory)."""

from __future__ import annotations

from flask import current_app

from flask_taskq import Task
from tests.apps.migration_app import tq


@tq.task(bind=True, ignore_result=False)
def long_task(self: Task, total: int) -> dict[str, object]:
    """Report PROGRESS ``total`` times, then return what the bound task saw."""
    for done in range(total):
        self.update_state(state="PROGRESS", meta={"current": done, "total": total})
    return {"id": self.request.id, "total": total, "label": current_app.config["LABEL"]}


@tq.task(ignore_result=False)
def mail_welcome(user: str) -> str:
    """Routed to the queue ``mail`` by the glob of ``CELERY_TASK_ROUTES``."""
    return f"welcome {user}"


@tq.task(ignore_result=False)
def deliver(kind: str, payload: str) -> str:
    """Routed to ``urgent`` by the router function when ``kind`` is ``"urgent"``."""
    return f"{kind}:{payload}"


@tq.periodic_task(0.5, name="tests.apps.migration_tasks.pulse")
def pulse() -> str:
    """Sent by beat only when beat imported this module (``TASKQ_IMPORTS``)."""
    return "pulse"
