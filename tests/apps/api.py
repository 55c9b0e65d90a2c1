"""An app for the API-level tests (``flask --app tests.apps.api``).

``create_app(config)`` takes config overrides, so one test can build an eager app, a
``memory://`` app or an app with results disabled from the same tasks.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, current_app, g, has_app_context

from flask_taskq import TaskQueue

tq = TaskQueue()


class ApiError(Exception):
    """Raised by ``boom``; importable, so ``get()`` can rebuild it."""


@tq.task
def add(x, y):
    return x + y


@tq.task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@tq.task
def typename(value):
    """The type the task received ``value`` as, after the trip through the serializer."""
    return type(value).__name__


@tq.task
def app_info():
    """What the task sees of its application context."""
    return {
        "has_context": has_app_context(),
        "app": current_app.name,
        "marker": getattr(g, "marker", None),
    }


@tq.task
def boom(message):
    raise ApiError(message)


@tq.task(name="api.quiet", queue="low", ignore_result=True)
def quiet(token):
    """Records ``token`` in the Redis list ``test:quiet`` and keeps no result."""
    redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"]).rpush("test:quiet", token)
    return token


@tq.task
def gate(name):
    """Records that it started (list ``test:entered``), then waits until the test pushes
    to ``test:gate:<name>``: a task whose running state a test can observe."""
    r = redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])
    r.rpush("test:entered", name)
    r.blpop([f"test:gate:{name}"], timeout=30)
    return name


@tq.task(expires=60)
def perishable():
    """Dropped unless a worker starts it within a minute of sending."""
    return "fresh"


@tq.task(queue="urgent", priority=8)
def urgent():
    return "done"


def create_app(config: dict | None = None) -> Flask:
    app = Flask("api")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config.update(config or {})
    tq.init_app(app)
    return app
