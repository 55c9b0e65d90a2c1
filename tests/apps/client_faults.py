"""The app of the client-fault tests (tests/test_faults_client.py): chord members that
can be held on a file flag, and a callback that counts its runs in Redis."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

tq = TaskQueue()


@tq.task
def member(value, flag=None):
    """Return ``value``; with ``flag`` (a path), first create ``<flag>.started`` and wait
    (at most a minute) until the test creates ``flag``."""
    if flag:
        Path(flag + ".started").touch()
        deadline = time.monotonic() + 60
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.02)
    return value


@tq.task
def total(values, token="total"):
    """A chord callback: count the run in Redis (hash ``cf:callback_runs``), then sum."""
    redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"]).hincrby(
        "cf:callback_runs", token, 1
    )
    return sum(values)


def create_app() -> Flask:
    app = Flask("client_faults")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    if "TASKQ_VISIBILITY_TIMEOUT" in os.environ:
        app.config["TASKQ_VISIBILITY_TIMEOUT"] = float(os.environ["TASKQ_VISIBILITY_TIMEOUT"])
    tq.init_app(app)
    return app
