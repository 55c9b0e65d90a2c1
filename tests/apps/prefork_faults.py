"""The app of the prefork fault tests (tests/test_faults_prefork.py): a task that holds the
GIL, a slow task, and (with ``PREFORK_CRASH_FIRST_CHILD``) a first child that crashes as
soon as it is ready.

Tasks record their starts in Redis (hash ``pf:started``) so tests can count runs across
processes.
"""

from __future__ import annotations

import ctypes
import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue, signals

tq = TaskQueue()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def hold_gil(token: str, seconds: int) -> str:
    """Count a start of ``token``, then sleep ``seconds`` inside one C call that keeps the
    GIL (``ctypes.PyDLL`` does not release it), so no other thread of the process runs."""
    _redis().hincrby("pf:started", token, 1)
    ctypes.PyDLL(None).sleep(seconds)
    return token


@tq.task
def slow(token: str, seconds: float) -> str:
    """Count a start of ``token``, then sleep ``seconds`` (releasing the GIL)."""
    _redis().hincrby("pf:started", token, 1)
    time.sleep(seconds)
    return token


def _crash_first_child(sender: object, **kw: object) -> None:
    # The first consuming process to get ready exits at once (a child crashing on start);
    # the ones after it live.
    client = redis.Redis.from_url(os.environ["TASKQ_BROKER_URL"])
    if client.incr("pf:ready") == 1:
        client.rpush("pf:crashed", os.getpid())
        os._exit(3)


def create_app() -> Flask:
    app = Flask("prefork_faults")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    for key in ("TASKQ_VISIBILITY_TIMEOUT", "TASKQ_WORKER_SHUTDOWN_TIMEOUT"):
        if key in os.environ:
            app.config[key] = float(os.environ[key])
    tq.init_app(app)
    if os.environ.get("PREFORK_CRASH_FIRST_CHILD"):
        signals.worker_ready.connect(_crash_first_child, weak=False)
    return app
