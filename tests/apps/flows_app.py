"""The app of the workflow and beat tests that run on both transports
(``tests/test_store_flows.py``): plain tasks that keep nothing outside their results, so
the same test reads what ran on ``memory://`` and on Redis.

``create_app(**config)`` reads ``TASKQ_BROKER_URL`` and ``TASKQ_RESULT_BACKEND`` from the
environment (so a worker process can load it), then applies ``config``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()


class FlowError(Exception):
    """Raised by the task that fails on purpose."""


@tq.task(name="flows.add")
def add(x: int, y: int) -> int:
    return x + y


@tq.task(name="flows.mul")
def mul(x: int, y: int) -> int:
    return x * y


@tq.task(name="flows.collect")
def collect(values: list[Any]) -> list[Any]:
    """A chord callback: returns what it got."""
    return values


@tq.task(name="flows.fail")
def fail(*args: Any) -> None:
    raise FlowError(f"failed {args!r}")


@tq.task(name="flows.stamp", bind=True)
def stamp(self: Any) -> dict[str, Any]:
    """A periodic task: returns the beat header of the message that ran it."""
    return dict(self.request.headers.get("taskq_beat") or {})


def create_app(**config: Any) -> Flask:
    """The app; ``config`` overrides the environment's."""
    app = Flask("flows")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "memory://")
    for key in ("TASKQ_RESULT_BACKEND", "TASKQ_STORE_URL", "TASKQ_KEY_PREFIX"):
        if key in os.environ:  # the store and prefix: RabbitMQ (tests/test_amqp_seam.py)
            app.config[key] = os.environ[key]
    app.config.update(config)
    tq.init_app(app)
    return app
