"""The app of the ``async def`` task tests: tasks record what happens to them in Redis
(``aio:*`` keys) so tests see it from outside the worker processes."""

from __future__ import annotations

import asyncio
import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import SoftTimeLimitExceeded, TaskQueue

tq = TaskQueue()
_clients: dict[tuple[int, str], redis.Redis] = {}


class Flaky(Exception):
    """Raised by tasks that fail on purpose."""


def _redis() -> redis.Redis:
    """One client per process (blocking calls, fast on a local Redis)."""
    url = current_app.config["TASKQ_BROKER_URL"]
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(url)
    return client


@tq.task(bind=True)
async def whoami(self, x):
    """Uses current_app and self.request inside the coroutine."""
    await asyncio.sleep(0.01)
    return {
        "app": current_app.name,
        "x": x,
        "id": self.request.id,
        "marker": current_app.config["MARKER"],
    }


@tq.task
async def nap(token, seconds):
    """Counts the naps in flight (``aio:levels`` gets the count each one saw at start)."""
    r = _redis()
    r.rpush("aio:levels", r.incr("aio:inflight"))
    try:
        await asyncio.sleep(seconds)
    finally:
        r.decr("aio:inflight")
    r.hincrby("aio:done", token, 1)
    return token


@tq.task
def add(a, b):
    """A plain sync task, beside the async ones."""
    return a + b


@tq.task
async def sleeper(token, seconds):
    """Notes its start, sleeps; notes in ``aio:cancelled`` if it was cancelled."""
    r = _redis()
    r.hincrby("aio:attempts", token, 1)
    r.hset("aio:started", token, time.time())
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        r.hset("aio:cancelled", token, 1)
        raise
    r.hincrby("aio:finished", token, 1)
    return token


@tq.task(time_limit=1)
async def hard_limited(token, seconds):
    """Sleeps past its hard limit; its cancellation is noted."""
    return await sleeper.run(token, seconds)


@tq.task(soft_time_limit=0.5)
async def soft_limited(token, seconds):
    """Sleeps past its soft limit; cleans up when it sees SoftTimeLimitExceeded."""
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        await asyncio.sleep(0.01)  # it may still await while cleaning up
        return "cleaned up"
    return "slept"


@tq.task(bind=True, max_retries=5, default_retry_delay=0.1)
async def flaky(self, token, failures):
    """Fails ``failures`` times, retrying through ``self.retry``, then succeeds."""
    attempt = int(_redis().hincrby("aio:attempts", token, 1))
    await asyncio.sleep(0)
    if attempt <= failures:
        raise self.retry(exc=Flaky(f"attempt {attempt}"))
    return {"attempt": attempt, "retries": self.request.retries}


@tq.task(autoretry_for=(Flaky,), max_retries=3, retry_backoff=0.1, retry_jitter=False)
async def auto(token, failures):
    """Fails with Flaky ``failures`` times; autoretry_for retries it."""
    attempt = int(_redis().hincrby("aio:attempts", token, 1))
    await asyncio.sleep(0)
    if attempt <= failures:
        raise Flaky(f"attempt {attempt}")
    return attempt


@tq.task(rate_limit="5/s")
async def limited(token):
    """Records when it starts; at most 5 starts per second."""
    _redis().hset("aio:limited_at", token, time.time())
    await asyncio.sleep(0)
    return token


@tq.task
async def double(x):
    await asyncio.sleep(0)
    return 2 * x


@tq.task
async def quick(x):
    """Ends at its first step (it never awaits): often before the thread that started it
    has left the pipeline."""
    return x


@tq.task
async def boom(token):
    await asyncio.sleep(0)
    raise Flaky(f"boom {token}")


@tq.task
async def outer(x):
    """Runs another async task eagerly from inside its coroutine (eager tests only: in a
    worker, a blocking ``get()`` would stop the loop)."""
    return whoami.delay(x).get(timeout=5)["x"] + 1


def _record_signals() -> None:
    """Each task signal pushes ``<signal> <task> <detail>`` to ``aio:signals``, from
    inside the task's app context (it reads the app's config)."""
    from flask_taskq import signals

    def push(name: str, task: object, detail: object) -> None:
        marker = current_app.config["MARKER"]  # fails outside the app context
        label = getattr(task, "name", str(task)).rsplit(".", 1)[-1]
        _redis().rpush("aio:signals", f"{name} {label} {detail} {marker}")

    def prerun(sender=None, task=None, **kw):
        push("prerun", task, "-")

    def postrun(sender=None, task=None, state=None, **kw):
        push("postrun", task, state)

    def success(sender=None, task=None, result=None, **kw):
        push("success", task, result)

    def failure(sender=None, task=None, exception=None, **kw):
        push("failure", task, type(exception).__name__)

    for signal, receiver in (
        (signals.task_prerun, prerun),
        (signals.task_postrun, postrun),
        (signals.task_success, success),
        (signals.task_failure, failure),
    ):
        signal.connect(receiver, weak=False)


def create_app() -> Flask:
    app = Flask("async_app")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config["MARKER"] = "from-the-app-config"
    if "TASKQ_VISIBILITY_TIMEOUT" in os.environ:
        app.config["TASKQ_VISIBILITY_TIMEOUT"] = float(os.environ["TASKQ_VISIBILITY_TIMEOUT"])
    if os.environ.get("TASKQ_ALWAYS_EAGER"):
        app.config["TASKQ_ALWAYS_EAGER"] = True
    tq.init_app(app)
    if os.environ.get("ASYNC_APP_SIGNALS"):
        _record_signals()

    @app.post("/fetch/<int:x>")
    async def fetch_view(x: int):
        await asyncio.sleep(0)
        result = whoami.delay(x)
        if app.config.get("TASKQ_ALWAYS_EAGER"):
            return {"id": result.id, "value": result.get(timeout=5)}
        return {"id": result.id}

    return app
