"""The app of the store-state tests (rate limits, revocation, monitoring, paused queues),
on ``memory://`` or Redis: ``create_app`` reads ``TASKQ_BROKER_URL`` and
``TASKQ_RESULT_BACKEND`` from the environment, so a worker process can load it."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()


@tq.task(rate_limit="2/s")
def limited(x: int) -> int:
    """Runs at most twice a second over every worker."""
    return x


@tq.task
def echo(x: Any) -> Any:
    """Returns its argument."""
    return x


class Boom(Exception):
    """Raised by :func:`boom`."""


@tq.task
def boom(x: Any) -> None:
    """Always fails."""
    raise Boom(x)


def create_app(**config: Any) -> Flask:
    """The app on the transport the environment (or ``config``) names."""
    app = Flask("store_app")
    url = os.environ.get("TASKQ_BROKER_URL", "memory://")
    app.config["TASKQ_BROKER_URL"] = url
    app.config["TASKQ_RESULT_BACKEND"] = os.environ.get("TASKQ_RESULT_BACKEND", url)
    app.config.update(config)
    tq.init_app(app)
    return app
