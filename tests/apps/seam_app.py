"""The app of the transport-seam tests (tests/test_transport_both.py): run by the test
itself on ``memory://`` and by a real worker process on Redis. Nothing here reads the
transport directly: what a test needs to see goes through results or files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()

#: The queue the queue-statistics test sends to.
STATS_QUEUE = "seam-stats"


class Flaky(Exception):
    """Raised by a task that fails on purpose."""


@tq.task(bind=True, max_retries=5, default_retry_delay=0.05)
def flaky(self: Any, failures: int) -> dict[str, int]:
    """Fail ``failures`` times (retrying through ``self.retry``), then succeed."""
    if self.request.retries < failures:
        raise self.retry(exc=Flaky(f"attempt {self.request.retries + 1}"))
    return {"retries": self.request.retries}


@tq.task
def add(x: int, y: int) -> int:
    return x + y


@tq.task(unique=lambda user_id: f"user-{user_id}", unique_for=60)
def per_user(user_id: int) -> int:
    """A unique task: one per user while waiting or running."""
    return user_id


@tq.task(queue=STATS_QUEUE)
def hold(gate: str, timeout: float = 30.0) -> None:
    """Wait until the file ``gate`` exists (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def create_app(**config: Any) -> Flask:
    """The app; config from the keyword arguments, else ``TASKQ_BROKER_URL`` from the
    environment (a worker process)."""
    app = Flask("seam")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "memory://")
    for key in ("TASKQ_STORE_URL", "TASKQ_KEY_PREFIX"):  # RabbitMQ (tests/test_amqp_seam.py)
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    app.config.update(config)
    tq.init_app(app)
    return app
