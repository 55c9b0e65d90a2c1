"""The app bench/cluster.py runs workers for (``flask --app bench.cluster_app:create_app``):
one no-op task, no results, the broker from ``TASKQ_BROKER_URL``."""

from __future__ import annotations

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
    app.config.update(config)
    tq.init_app(app)
    return app
