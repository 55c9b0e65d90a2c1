"""An app for the backlog views (``inspect queues``, metrics, dashboard) and the acks'
``WAIT``: a task that holds its worker thread, and a quick one. Broker, results,
``TASKQ_QUEUE_SHARDS`` (JSON) and ``TASKQ_WAIT_REPLICAS`` from the environment, so that
worker processes get the test's values."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()
#: Set by a test to let the ``hold`` tasks of an in-process (``memory://``) worker end.
RELEASE = threading.Event()
USER, PASSWORD = "ops", "backlog"


@tq.task(name="backlog.hold")
def hold(seconds: float) -> None:
    """Keep a worker thread busy for ``seconds`` (or until :data:`RELEASE`)."""
    RELEASE.wait(seconds)


@tq.task(name="backlog.add")
def add(x: int, y: int) -> int:
    return x + y


def create_app(**config: Any) -> Flask:
    app = Flask("backlog")
    app.config.update(
        TASKQ_BROKER_URL=os.environ.get("TASKQ_BROKER_URL", "memory://"),
        TASKQ_QUEUE_SHARDS=json.loads(os.environ.get("TASKQ_QUEUE_SHARDS", "{}")),
        TASKQ_DASHBOARD=True,
        SECRET_KEY="backlog test",
        TASKQ_DASHBOARD_AUTH=(USER, PASSWORD),
    )
    for key in ("TASKQ_RESULT_BACKEND", "TASKQ_STORE_URL", "TASKQ_KEY_PREFIX"):
        if key in os.environ:
            app.config[key] = os.environ[key]
    app.config["TASKQ_WAIT_REPLICAS"] = int(os.environ.get("TASKQ_WAIT_REPLICAS", "0"))
    app.config.update(config)
    tq.init_app(app)
    return app
