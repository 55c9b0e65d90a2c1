"""An app laid out as many Flask+Celery apps are, moved to flask-taskq by changing its
imports only (``flask --app tests.apps.migration_app:create_app``).

- The queue object is created alone at import (Celery: ``celery = Celery(__name__)``) and
  bound in the factory (``celery.conf.update(app.config)``): here ``tq = TaskQueue()``
  and ``tq.init_app(app)``.
- The config keeps Celery's upper-case keys (``CELERY_BROKER_URL``, ...), which
  flask-taskq applies to their ``TASKQ_*`` keys with a warning each.
- The tasks module (``tests.apps.migration_tasks``) is imported lazily, by the views; the
  worker imports it because ``CELERY_IMPORTS`` (``TASKQ_IMPORTS``) names it.
- ``FLASK_*`` variables override the config (``FLASK_TASKQ_IMPORTS='["x"]'``).
- ``CELERY_TASK_ROUTES`` is a tuple of a dict and a router function.
- With ``$TASKQ_CELERY_RECEIVERS`` set, signal receivers written for Celery are connected;
  they push what they saw to the Redis list ``test:signals``.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue, signals

tq = TaskQueue()


def route_by_argument(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, Any] | None:
    """A Celery router function: urgent deliveries go to the queue ``urgent``."""
    if name.endswith(".deliver") and args and args[0] == "urgent":
        return {"queue": "urgent"}
    return None


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    url = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config.update(
        CELERY_BROKER_URL=url,
        CELERY_RESULT_BACKEND=url,
        CELERY_IMPORTS=("tests.apps.migration_tasks",),
        CELERY_TASK_ROUTES=(
            {"tests.apps.migration_tasks.mail_*": {"queue": "mail"}},
            route_by_argument,
        ),
        LABEL="migration",
    )
    app.config.from_prefixed_env()
    app.config.update(config or {})
    tq.init_app(app)

    @app.post("/long/<int:total>")
    def start_long(total: int) -> dict[str, Any]:
        from tests.apps import migration_tasks

        return {"id": migration_tasks.long_task.delay(total).id}

    @app.get("/long/<task_id>")
    def long_status(task_id: str) -> dict[str, Any]:
        from tests.apps import migration_tasks

        result = migration_tasks.long_task.AsyncResult(task_id)
        return {"state": result.state, "info": result.info}

    if os.environ.get("TASKQ_CELERY_RECEIVERS"):
        signals.task_prerun.connect(on_prerun)
        signals.task_success.connect(on_success)
        signals.task_postrun.connect(on_postrun)
        signals.task_prerun.connect(exploding)
    return app


def _record(text: str) -> None:
    redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"]).rpush("test:signals", text)


def on_prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **kw):
    """Celery's documented form: every argument a keyword with a default."""
    _record(f"prerun {sender.name} {task_id} {list(args)}")


def on_success(**kw):
    """Only keywords: the sender comes as ``kw["sender"]``."""
    _record(f"success {kw['sender'].name} {kw['result']}")


def on_postrun(task_id, **kw):
    """A required first parameter that is not the sender."""
    _record(f"postrun {task_id} {kw['state']}")


def exploding(sender=None, **kw):
    """A receiver that raises: logged with its name, the task still runs."""
    raise RuntimeError("celery receiver bug")
