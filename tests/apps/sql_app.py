"""The app of the SQL result backend tests (``tests/test_sql_backend.py``).

``create_app(**config)`` reads ``TASKQ_BROKER_URL``, ``TASKQ_RESULT_BACKEND``,
``TASKQ_RESULT_EXPIRES`` and ``TASKQ_RESULT_EXTENDED`` (``1``: on) from the environment, so
a worker process loads the same app; with ``SQLALCHEMY_DATABASE_URI`` in the environment
it also sets up Flask-SQLAlchemy (for ``TASKQ_RESULT_BACKEND = "flask-sqlalchemy"``).
``config`` overrides the environment's.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()


class SqlAppError(Exception):
    """Raised by the task that fails on purpose."""


@tq.task(name="sql.add")
def add(x: int, y: int) -> int:
    return x + y


@tq.task(name="sql.collect")
def collect(values: list[Any]) -> list[Any]:
    """A chord callback: returns what it got."""
    return values


@tq.task(name="sql.fail")
def fail(reason: str) -> None:
    raise SqlAppError(reason)


def create_app(**config: Any) -> Flask:
    """The app; ``config`` overrides the environment's."""
    app = Flask("sql_app")
    for key in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND", "SQLALCHEMY_DATABASE_URI"):
        if key in os.environ:
            app.config[key] = os.environ[key]
    if "TASKQ_RESULT_EXPIRES" in os.environ:
        app.config["TASKQ_RESULT_EXPIRES"] = int(os.environ["TASKQ_RESULT_EXPIRES"])
    if "TASKQ_RESULT_EXTENDED" in os.environ:
        app.config["TASKQ_RESULT_EXTENDED"] = os.environ["TASKQ_RESULT_EXTENDED"] == "1"
    app.config.update(config)
    tq.init_app(app)
    if app.config.get("SQLALCHEMY_DATABASE_URI"):
        from flask_sqlalchemy import SQLAlchemy

        SQLAlchemy().init_app(app)
    return app
