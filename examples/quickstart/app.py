"""The flask-taskq quickstart: a small Flask app that runs its work on a task queue.

Run a worker and the app (see README.md)::

    flask --app examples.quickstart.app:create_app taskq worker -P solo -l info
    flask --app examples.quickstart.app:create_app run

``POST /add`` and ``POST /word-count`` enqueue a task and answer 202 with its id;
``GET /result/<task_id>`` reports its state and, once it has finished, its value.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, request
from werkzeug.exceptions import BadRequest

from flask_taskq import AsyncResult, TaskQueue
from flask_taskq.states import READY_STATES, SUCCESS

tq = TaskQueue()


@tq.task
def add(x: float, y: float) -> float:
    """Add two numbers (the "hello world" of task queues)."""
    return x + y


@tq.task
def word_count(text: str, top: int = 3) -> dict[str, Any]:
    """Count the words of ``text`` and list its ``top`` most common ones."""
    words = re.findall(r"[\w']+", text.lower())
    return {"words": len(words), "most_common": Counter(words).most_common(top)}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; the broker is ``$TASKQ_BROKER_URL`` unless ``config`` sets it."""
    app = Flask(__name__)
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://localhost:6379/0")
    app.config.update(config or {})
    tq.init_app(app)

    @app.errorhandler(400)
    def bad_request(error: BadRequest):
        """Answer bad input in JSON, as the rest of this small API does."""
        return {"error": error.description}, 400

    @app.post("/add")
    def start_add():
        """Enqueue ``add(x, y)`` from a JSON body or a form; answer 202 with the task id."""
        data = _payload()
        result = add.delay(_number(data, "x"), _number(data, "y"))
        return {"task_id": result.id}, 202

    @app.post("/word-count")
    def start_word_count():
        """Enqueue ``word_count(text)`` from a JSON body or a form."""
        text = _payload().get("text")
        if not isinstance(text, str):
            abort(400, description="'text' must be a string")
        return {"task_id": word_count.delay(text).id}, 202

    @app.get("/result/<task_id>")
    def task_result(task_id: str):
        """The task's state; ``value`` is null until it is ready, then its return value
        (or, if it failed, the error as a string)."""
        result = AsyncResult(task_id)
        state = result.state  # read once, so the fields below agree with each other
        ready = state in READY_STATES
        value = result.result if ready else None
        if isinstance(value, BaseException):
            value = f"{type(value).__name__}: {value}"
        return {"state": state, "ready": ready, "successful": state == SUCCESS, "value": value}

    return app


def _payload() -> Mapping[str, Any]:
    """The request's JSON object, or else its form."""
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else request.form


def _number(data: Mapping[str, Any], key: str) -> float:
    """``data[key]`` as a finite int or float (form fields arrive as strings), else a 400."""
    value = data.get(key)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        abort(400, description=f"{key!r} must be a number")
    return value
