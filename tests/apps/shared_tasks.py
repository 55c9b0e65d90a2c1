"""Tasks defined with ``@shared_task``: this module never sees a ``TaskQueue``.

The apps of ``tests.apps.shared_app`` import it from their factory. Tasks that tell what
the worker saw push it to Redis lists (``test:*``), which works whether or not the task's
result is kept.
"""

from __future__ import annotations

import json

import redis
from flask import current_app

from flask_taskq import shared_task


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@shared_task
def add(x, y):
    return x + y


@shared_task
def where():
    """Which app ran the task."""
    return {
        "label": current_app.config.get("LABEL"),
        "prefix": current_app.config["TASKQ_KEY_PREFIX"],
    }


def _push_seen(task, token: str) -> dict:
    """Push what the running task sees of its options to the list ``test:seen``."""
    seen = {
        "token": token,
        "label": current_app.config.get("LABEL"),
        "ignore_result": task.ignore_result,
        "max_retries": task.max_retries,
        "priority": task.request.priority,
        **{
            key: task.options[key]
            for key in (
                "acks_late",
                "time_limit",
                "soft_time_limit",
                "rate_limit",
                "default_retry_delay",
                "retry_backoff",
                "retry_backoff_max",
                "retry_jitter",
                "expires",
            )
        },
    }
    _redis().rpush("test:seen", json.dumps(seen))
    return seen


@shared_task(bind=True)
def report(self, token):
    """Report the options in effect: the app's ``TASKQ_TASK_*`` defaults throughout."""
    return _push_seen(self, token)


@shared_task(
    bind=True,
    ignore_result=False,
    max_retries=5,
    time_limit=50,
    soft_time_limit=40,
    rate_limit="1000/s",
    priority=2,
    default_retry_delay=7,
    retry_backoff=3,
    retry_backoff_max=30,
    retry_jitter=False,
    expires=600,
)
def report_own(self, token):
    """Report the options in effect: this task's own options throughout."""
    return _push_seen(self, token)


@shared_task(bind=True, ignore_result=False, autoretry_for=(LookupError,))
def flaky(self, token):
    """Fail every time, counting runs in the hash ``test:runs``; retried as often as the
    app's TASKQ_TASK_MAX_RETRIES allows."""
    _redis().hincrby("test:runs", token, 1)
    raise LookupError(token)


@shared_task(bind=True, ignore_result=False, autoretry_for=(LookupError,), max_retries=3)
def flaky_own(self, token):
    """Like ``flaky``, with its own ``max_retries``."""
    _redis().hincrby("test:runs", token, 1)
    raise LookupError(token)


@shared_task(bind=True, ignore_result=False)
def progress(self, total, gate):
    """Report PROGRESS after each of ``total`` steps, then wait until the test pushes to
    the list ``gate`` before the next step."""
    client = _redis()
    for step in range(1, total + 1):
        self.update_state(state="PROGRESS", meta={"current": step, "total": total})
        if client.blpop([gate], timeout=60) is None:
            raise TimeoutError(f"step {step}: nobody pushed to {gate}")
    return {"current": total, "total": total}


@shared_task(bind=True, ignore_result=True)
def quiet_progress(self, token):
    """Report PROGRESS although no result is kept, then push ``token`` to ``test:quiet``."""
    self.update_state(state="PROGRESS", meta={"current": 1, "total": 1})
    _redis().rpush("test:quiet", token)
