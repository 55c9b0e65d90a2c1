"""The app bench/cluster.py runs workers for (``flask --app bench.cluster_app:create_app``):
one no-op task, no results, the broker from ``TASKQ_BROKER_URL``, the shards of
``TASKQ_QUEUE_SHARDS`` from ``BENCH_QUEUE_SHARDS`` (JSON)."""

from __future__ import annotations

import json
import os

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()


@tq.task(name="bench.cluster.noop")
def noop() -> None:
    """Do nothing."""


def create_app(**config: object) -> Flask:
    app = Flask("bench_cluster")
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    app.config["TASKQ_RESULT_BACKEND"] = None
    app.config["TASKQ_QUEUE_SHARDS"] = json.loads(os.environ.get("BENCH_QUEUE_SHARDS", "{}"))
    app.config.update(config)
    tq.init_app(app)
    return app
