"""The app of the workflow tests: small tasks that count their runs in Redis (``cv:*``
keys) so tests can see from outside the worker processes what ran and how often."""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

tq = TaskQueue()


class Boom(Exception):
    """Raised by tasks that fail on purpose."""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def add(x, y):
    return x + y


@tq.task
def mul(x, y):
    return x * y


@tq.task
def double(x, seconds=0.0):
    if seconds:
        time.sleep(seconds)
    return x * 2


@tq.task
def boom(*args):
    raise Boom(f"boom {args!r}")


@tq.task
def tsum(values, token="sum"):
    """A chord callback: counts its runs, then sums."""
    _redis().hincrby("cv:callback_runs", token, 1)
    return sum(values)


@tq.task
def collect(values, token="collect"):
    _redis().hincrby("cv:callback_runs", token, 1)
    return values


@tq.task
def note(value, token):
    """A link target: records what it got."""
    _redis().rpush(f"cv:note:{token}", repr(value))
    return value


@tq.task
def errback(task_id, token):
    """A link_error target: records the id of the task that failed."""
    _redis().rpush(f"cv:errback:{token}", task_id)


@tq.task(bind=True, max_retries=3, default_retry_delay=0.05)
def flaky_double(self, x, failures=1):
    """Retries ``failures`` times before doubling."""
    attempt = _redis().hincrby("cv:attempts", f"{x}", 1)
    if attempt <= failures:
        raise self.retry(exc=Boom(f"attempt {attempt}"))
    return x * 2


@tq.task
def slow_once(x, token, seconds):
    """Sleeps ``seconds`` on its first run only (to be killed mid-run), then doubles."""
    r = _redis()
    if r.hincrby("cv:slow_runs", token, 1) == 1:
        r.set(f"cv:slow_started:{token}", 1)
        time.sleep(seconds)
    return x * 2


def create_app(**config) -> Flask:
    """The app; ``config`` overrides (the graph tests mount the dashboard so)."""
    app = Flask("canvas")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    if "TASKQ_VISIBILITY_TIMEOUT" in os.environ:
        app.config["TASKQ_VISIBILITY_TIMEOUT"] = float(os.environ["TASKQ_VISIBILITY_TIMEOUT"])
    app.config.update(config)
    tq.init_app(app)
    return app
