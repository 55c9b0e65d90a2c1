"""The app of the task-control tests: retries, limits, revocation, uniqueness, signing.

Tasks count what happens to them in Redis (``ctl:*`` keys) so tests can see it from the
outside of worker processes.
"""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import Reject, TaskQueue, TimeLimitExceeded

tq = TaskQueue()


class Flaky(Exception):
    """Raised by tasks that fail on purpose."""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


def _attempt(token: str) -> int:
    return int(_redis().hincrby("ctl:attempts", token, 1))


@tq.task(bind=True, max_retries=5, default_retry_delay=0.2)
def flaky(self, token, failures):
    """Fail ``failures`` times, retrying through ``self.retry``, then succeed."""
    attempt = _attempt(token)
    if attempt <= failures:
        raise self.retry(exc=Flaky(f"attempt {attempt}"))
    return {"attempt": attempt, "retries": self.request.retries}


@tq.task(bind=True, max_retries=2, default_retry_delay=0.1)
def hopeless(self, token):
    """Always fails; gives up after two retries."""
    attempt = _attempt(token)
    raise self.retry(exc=Flaky(f"attempt {attempt}"))


@tq.task(autoretry_for=(Flaky,), max_retries=3, retry_backoff=0.1, retry_jitter=False)
def auto(token, failures):
    """Fails with Flaky ``failures`` times; autoretry_for retries with backoff."""
    attempt = _attempt(token)
    _redis().rpush(f"ctl:times:{token}", time.time())
    if attempt <= failures:
        raise Flaky(f"attempt {attempt}")
    return attempt


@tq.task
def rejecting(token):
    _attempt(token)
    raise Reject("not for us")


@tq.task
def record(token, seconds=0.0):
    """Count a run of ``token``; note when it started."""
    r = _redis()
    r.hset("ctl:started_at", token, time.time())
    if seconds:
        time.sleep(seconds)
    r.hincrby("ctl:runs", token, 1)
    return token


@tq.task(unique=True, unique_for=60)
def once(token, seconds=0.0):
    """A unique task: one per argument list while waiting or running."""
    return record(token, seconds)


@tq.task(unique=lambda user_id, note: f"user-{user_id}")
def per_user(user_id, note):
    """Unique per user, whatever the note."""
    return note


@tq.task(rate_limit="5/s")
def limited(token):
    """Records when it starts; at most 5 starts per second across all workers."""
    _redis().hset("ctl:limited_at", token, time.time())
    return token


@tq.task(soft_time_limit=0.5)
def soft_limited(token, seconds):
    """Sleeps past its soft limit; reports whether it saw SoftTimeLimitExceeded."""
    from flask_taskq import SoftTimeLimitExceeded

    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        _redis().hset("ctl:soft", token, "caught")
        return "cleaned up"
    return "finished"


@tq.task(time_limit=1)
def hard_limited(token, seconds):
    """Runs past its hard limit; its process gets killed."""
    _attempt(token)
    time.sleep(seconds)
    return "finished"


@tq.task(time_limit=1, autoretry_for=(TimeLimitExceeded,), max_retries=1, default_retry_delay=0)
def hard_then_quick(token):
    """Over its hard limit on the first attempt, quick on the retry."""
    if _attempt(token) == 1:
        time.sleep(30)
    return "second attempt"


@tq.task(soft_time_limit=1, time_limit=1)
def both_limits(token):
    """Equal soft and hard limits; busy in Python so an async exception can land."""
    from flask_taskq import SoftTimeLimitExceeded

    deadline = time.time() + 5
    try:
        while time.time() < deadline:
            sum(range(1000))
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@tq.task(time_limit=1, unique=True)
def unique_hard(token):
    time.sleep(30)


def create_app() -> Flask:
    app = Flask("control")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    for key in ("TASKQ_VISIBILITY_TIMEOUT",):
        if key in os.environ:
            app.config[key] = float(os.environ[key])
    for key in ("TASKQ_SIGNING_KEY", "TASKQ_SERIALIZER"):
        if key in os.environ:
            app.config[key] = os.environ[key]
    tq.init_app(app)
    return app
