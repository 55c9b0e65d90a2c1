"""An app whose ``default`` queue is sharded (``TASKQ_QUEUE_SHARDS`` from the environment as
JSON, so that worker processes get the producer's value); broker and results from
``TASKQ_BROKER_URL`` and ``TASKQ_RESULT_BACKEND``."""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()


@tq.task(name="sharded.add")
def add(x: int, y: int) -> int:
    return x + y


@tq.task(name="sharded.flaky", bind=True, max_retries=3)
def flaky(self: Any, i: int) -> int:
    """Fails its first attempt (retried after a countdown), then returns ``i``."""
    if self.request.retries == 0:
        raise self.retry(countdown=0.2)
    return i


def create_app(**config: Any) -> Flask:
    app = Flask("sharded")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "memory://")
    if "TASKQ_RESULT_BACKEND" in os.environ:
        app.config["TASKQ_RESULT_BACKEND"] = os.environ["TASKQ_RESULT_BACKEND"]
    app.config["TASKQ_QUEUE_SHARDS"] = json.loads(os.environ.get("TASKQ_QUEUE_SHARDS", "{}"))
    app.config.update(config)
    tq.init_app(app)
    return app
