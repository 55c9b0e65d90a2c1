"""The app the integration tests run workers for (``flask --app tests.apps.basic``).

Tasks record what they did in Redis (``test:*`` keys) so tests can count runs across
processes.
"""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, current_app, g

from flask_taskq import TaskQueue

tq = TaskQueue()


class CustomError(Exception):
    """An exception type the tests expect to see re-raised by ``get()``."""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def add(x, y):
    return x + y


@tq.task
def noop():
    return None


@tq.task
def fail(message):
    raise CustomError(message)


@tq.task
def mark(token, seconds=0.0):
    """Count a start (hash ``test:started``, list ``test:order``) and a finished run (hash
    ``test:runs``) of ``token``, sleeping ``seconds`` in between."""
    r = _redis()
    r.hincrby("test:started", token, 1)
    r.rpush("test:order", token)
    if seconds:
        time.sleep(seconds)
    r.hincrby("test:runs", token, 1)
    return token


@tq.task
def gated(token, timeout=30.0):
    """Run until ``test:gate:<token>`` receives an element (or ``timeout`` seconds)."""
    _redis().blpop([f"test:gate:{token}"], timeout=timeout)
    return token


@tq.task
def context_probe():
    """What a task sees of the app context; ``g`` must be fresh for every task."""
    seen_before = getattr(g, "probe", None)
    g.probe = "set"
    return {"app": current_app.name, "g_before": seen_before, "pid": os.getpid()}


@tq.task(bind=True)
def whoami(self):
    return {
        "id": self.request.id,
        "task": self.request.task,
        "deliveries": self.request.delivery_count,
    }


def _record_signals(app: Flask) -> None:
    """Push "<signal> <pid> <detail>" to the list ``test:signals`` for each worker signal."""
    from flask_taskq import signals

    client = redis.Redis.from_url(app.config["TASKQ_BROKER_URL"])

    def recorder(name, detail):
        def receive(sender, **kw):
            client.rpush("test:signals", f"{name} {os.getpid()} {detail(sender, kw)}")

        getattr(signals, name).connect(receive, weak=False)

    recorder("task_received", lambda s, kw: f"{getattr(s, 'name', s)} {kw['task_id']}")
    recorder("task_rejected", lambda s, kw: f"{s} {kw['task_id']}")
    recorder("task_prerun", lambda s, kw: f"{s.name} {kw['task_id']} {current_app.name}")
    recorder("task_postrun", lambda s, kw: f"{s.name} {kw['task_id']} {kw['state']}")
    recorder("task_success", lambda s, kw: f"{s.name} {kw['task_id']} {kw['result']!r}")
    recorder(
        "task_failure", lambda s, kw: f"{s.name} {kw['task_id']} {type(kw['exception']).__name__}"
    )
    recorder("worker_ready", lambda s, kw: type(s).__name__)
    recorder("worker_shutdown", lambda s, kw: type(s).__name__)


def create_app() -> Flask:
    app = Flask("basic")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    for key in (
        "TASKQ_VISIBILITY_TIMEOUT",
        "TASKQ_WORKER_SHUTDOWN_TIMEOUT",
        "TASKQ_IDLE_CONSUMER_TTL",
    ):
        if key in os.environ:
            app.config[key] = float(os.environ[key])
    for flag in ("TASKQ_TRACK_STARTED", "TASKQ_RESULT_EXTENDED"):
        if flag in os.environ:
            app.config[flag] = os.environ[flag] == "1"
    if "TASKQ_SERIALIZER" in os.environ:
        app.config["TASKQ_SERIALIZER"] = os.environ["TASKQ_SERIALIZER"]
    tq.init_app(app)
    if os.environ.get("TASKQ_RECORD_SIGNALS"):
        _record_signals(app)
    if os.environ.get("TASKQ_BROKEN_RECEIVER"):
        from flask_taskq import signals

        def broken(sender, **kw):
            raise RuntimeError("receiver bug")

        signals.task_prerun.connect(broken, weak=False)

    @app.teardown_appcontext
    def count_teardown(exc):
        if os.environ.get("TASKQ_COUNT_TEARDOWN"):
            redis.Redis.from_url(app.config["TASKQ_BROKER_URL"]).incr("test:teardowns")

    return app
