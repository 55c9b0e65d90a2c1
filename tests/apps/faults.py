"""The app of the fault tests (tests/test_faults_worker.py): tasks whose results cannot be
encoded, a task that ends its thread, slow tasks that report their process, and tasks that
make Redis fail under the worker.

Tasks record what happens to them in Redis (``faults:*`` keys) so tests can see it from
outside the worker processes.
"""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

tq = TaskQueue()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def add(x, y):
    return x + y


@tq.task
def deep(depth=100_000):
    """A result nested far deeper than the recursion limit: it cannot be encoded."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@tq.task
def bad_text():
    """Fails with a message no UTF-8 encoder accepts (a lone surrogate)."""
    raise ValueError("bad \ud800 text")


@tq.task
def leave():
    """Ends the thread that runs it (``SystemExit`` is not a task error)."""
    raise SystemExit(0)


@tq.task
def pid(seconds=0.0):
    """Sleep ``seconds``; return the pid of the process that ran it."""
    time.sleep(seconds)
    return os.getpid()


@tq.task
def during_outage(seconds):
    """Set ``faults:started``, then sleep ``seconds`` (the test stops Redis meanwhile)."""
    _redis().set("faults:started", 1)
    time.sleep(seconds)
    return "done"


@tq.task
def fill_memory():
    """Make Redis refuse writes (``maxmemory`` 1 byte: OOM), then return: storing the
    result fails until the test lifts the limit."""
    _redis().config_set("maxmemory", 1)
    return "stored"


def create_app() -> Flask:
    app = Flask("faults")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    for key in ("TASKQ_VISIBILITY_TIMEOUT", "TASKQ_WORKER_SHUTDOWN_TIMEOUT"):
        if key in os.environ:
            app.config[key] = float(os.environ[key])
    tq.init_app(app)
    return app
