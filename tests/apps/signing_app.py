"""The app of the signing fault tests (tests/test_faults_signing.py): TASKQ_SIGNING_KEY,
a dashboard, and tasks that count their runs in Redis (``sig:*`` keys) so tests can see
them from outside the worker processes."""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import Reject, TaskQueue

tq = TaskQueue()

USER, PASSWORD = "admin", "pw"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


def _run(token: str) -> int:
    return int(_redis().hincrby("sig:runs", token, 1))


@tq.task
def record(token, seconds=0.0):
    """Count a run of ``token`` (after sleeping ``seconds``)."""
    _redis().hincrby("sig:started", token, 1)
    if seconds:
        time.sleep(seconds)
    _run(token)
    return token


@tq.task
def requeue_once(token):
    """Hands itself back with Reject(requeue=True) on its first run."""
    if _run(token) == 1:
        raise Reject("not yet", requeue=True)
    return "second run"


@tq.task(bind=True, max_retries=3, default_retry_delay=0.1)
def flaky(self, token, failures):
    """Fails ``failures`` times, retrying through ``self.retry``, then succeeds."""
    attempt = _run(token)
    if attempt <= failures:
        raise self.retry(exc=RuntimeError(f"attempt {attempt}"))
    return attempt


@tq.task(rate_limit="2/s")
def limited(token):
    """Rate limited: a worker defers what it cannot start yet."""
    return _run(token)


@tq.task(rate_limit="1/m")
def scarce(token, seconds=0.0):
    """One start a minute: after a crash, the worker that takes it over must defer it."""
    _redis().hincrby("sig:started", token, 1)
    time.sleep(seconds)
    return _run(token)


@tq.task
def fails_once(token):
    """Raises on its first run (no retry, no dead letter), succeeds after."""
    if _run(token) == 1:
        raise ValueError(f"{token} is broken")
    return f"{token} fixed"


def create_app() -> Flask:
    app = Flask("signing")
    app.config.update(
        TASKQ_BROKER_URL=os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0"),
        TASKQ_DASHBOARD=True,
        SECRET_KEY="test secret",
        TASKQ_DASHBOARD_AUTH=(USER, PASSWORD),
    )
    if "TASKQ_VISIBILITY_TIMEOUT" in os.environ:
        app.config["TASKQ_VISIBILITY_TIMEOUT"] = float(os.environ["TASKQ_VISIBILITY_TIMEOUT"])
    app.config["TASKQ_SIGNING_KEY"] = os.environ.get("TASKQ_SIGNING_KEY") or None
    tq.init_app(app)
    return app
