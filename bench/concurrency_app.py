"""The app of ``bench/concurrency.py``: the same trivial task without a concurrency limit,
with one it never reaches, and with one that parks most messages. Each run counts itself
with one INCR of ``taskqbench:conc:done``."""

from __future__ import annotations

import os

import redis
from flask import Flask

from flask_taskq import TaskQueue

PREFIX = "taskqbench"
DONE = f"{PREFIX}:conc:done"
tq = TaskQueue()
_client: list[redis.Redis] = []


def _count() -> None:
    if not _client:
        _client.append(redis.Redis.from_url(os.environ["TASKQ_BROKER_URL"]))
    _client[0].incr(DONE)


@tq.task(ignore_result=True)
def free(i: int) -> None:
    """No limit."""
    _count()


@tq.task(ignore_result=True, concurrency_key=lambda i: i % 100, concurrency_limit=1000)
def wide(i: int) -> None:
    """A limit never reached: a slot taken and given back per task."""
    _count()


@tq.task(ignore_result=True, concurrency_key=lambda i: i % 10, concurrency_limit=2)
def narrow(i: int) -> None:
    """Two per key over ten keys, on eight threads: many messages are parked and woken."""
    _count()


def create_app() -> Flask:
    """The app on ``TASKQ_BROKER_URL``."""
    app = Flask("bench_concurrency")
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    app.config["TASKQ_KEY_PREFIX"] = PREFIX
    tq.init_app(app)
    return app
