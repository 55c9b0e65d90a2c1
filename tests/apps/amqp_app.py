"""The app of the RabbitMQ tests (``flask --app tests.apps.amqp_app``): TASKQ_BROKER_URL is
an ``amqp://`` URL, the store is the Redis of ``TASKQ_STORE_URL``, where the tasks also
record what they did (``amqp:*`` keys)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

tq = TaskQueue()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_STORE_URL"])


@tq.task
def add(x, y):
    return x + y


@tq.task
def mark(token, seconds=0.0):
    """Count a start and a finished run of ``token`` (hashes ``amqp:started`` and
    ``amqp:runs``, list ``amqp:order``), sleeping ``seconds`` in between."""
    r = _redis()
    r.hincrby("amqp:started", token, 1)
    r.rpush("amqp:order", token)
    if seconds:
        time.sleep(seconds)
    r.hincrby("amqp:runs", token, 1)
    return token


@tq.task(bind=True, max_retries=5, default_retry_delay=0.2)
def flaky(self, token, failures):
    """Fail ``failures`` times, retrying through ``self.retry``, then succeed."""
    attempt = _redis().hincrby("amqp:attempts", token, 1)
    if attempt <= failures:
        raise self.retry(exc=RuntimeError(f"attempt {attempt}"))
    return {"attempt": attempt, "retries": self.request.retries}


@tq.task(bind=True, max_retries=2, default_retry_delay=0.2)
def slow_flaky(self, token, seconds):
    """Sleep ``seconds`` and retry once, then succeed."""
    attempt = _redis().hincrby("amqp:attempts", token, 1)
    if attempt == 1:
        time.sleep(seconds)
        raise self.retry(exc=RuntimeError("slow first attempt"))
    return attempt


@tq.task
def double(x):
    return 2 * x


@tq.task
def tsum(values):
    return sum(values)


@tq.task(unique=True, unique_for=60)
def once(token, seconds=0.0):
    """A unique task: one per argument list while waiting or running."""
    if seconds:
        time.sleep(seconds)
    return token


@tq.task
def park_then_hold_gil(token, seconds, hold):
    """Count a start of ``token``, sleep ``seconds`` (long enough to be parked), then
    sleep ``hold`` whole seconds inside one C call that keeps the GIL (``ctypes.PyDLL``
    does not release it): the process's other threads stop meanwhile. Then record in
    ``amqp:copies`` how many parked copies wait in the delayed set (1 if the copy of this
    run was renewed meanwhile, 0 if it fell due and was published again)."""
    from flask_taskq.keys import Keys

    r = _redis()
    r.hincrby("amqp:started", token, 1)
    time.sleep(seconds)
    ctypes.PyDLL(None).sleep(int(hold))
    delayed = Keys(current_app.config["TASKQ_KEY_PREFIX"]).delayed("default")
    r.hset("amqp:copies", token, r.zcard(delayed))
    r.hincrby("amqp:runs", token, 1)
    return token


@tq.task
def crash(token):
    """Kill the process running it (a task that crashes its worker every time)."""
    _redis().hincrby("amqp:crashes", token, 1)
    os.kill(os.getpid(), signal.SIGKILL)


def create_app() -> Flask:
    app = Flask("amqp_app")
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    app.config["TASKQ_STORE_URL"] = os.environ.get("TASKQ_STORE_URL")
    for key in (
        "TASKQ_MAX_DELIVERIES",
        "TASKQ_WORKER_SHUTDOWN_TIMEOUT",
        "TASKQ_AMQP_CONSUMER_TIMEOUT",
        "TASKQ_VISIBILITY_TIMEOUT",
    ):
        if key in os.environ:
            app.config[key] = float(os.environ[key])
    if "TASKQ_AMQP_QUEUE_TYPE" in os.environ:
        app.config["TASKQ_AMQP_QUEUE_TYPE"] = os.environ["TASKQ_AMQP_QUEUE_TYPE"]
    if "TASKQ_KEY_PREFIX" in os.environ:
        app.config["TASKQ_KEY_PREFIX"] = os.environ["TASKQ_KEY_PREFIX"]
    if os.environ.get("TASKQ_SIGNING_KEY"):
        app.config["TASKQ_SIGNING_KEY"] = os.environ["TASKQ_SIGNING_KEY"]
    app.config["TASKQ_BEAT_SCHEDULE"] = json.loads(os.environ.get("BEAT_TEST_SCHEDULE", "{}"))
    app.config["TASKQ_DASHBOARD"] = True
    app.config["TASKQ_ROUTES"] = {"tests.apps.amqp_app.add": {"queue": "math"}}
    tq.init_app(app)
    return app
