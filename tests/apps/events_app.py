"""The app of the task-event tests (``flask --app tests.apps.events_app``): events on
unless ``TASKQ_TEST_EVENTS=0``."""

from __future__ import annotations

import os
import time

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()


@tq.task
def ok(x):
    return x


@tq.task
def boom(message):
    raise ValueError(message)


@tq.task(autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0.05)
def doomed(token):
    """Retried once, then dead-lettered (retries exhausted)."""
    raise KeyError(token)


@tq.task
def total(values):
    return sum(values)


@tq.task
def slow(seconds):
    time.sleep(seconds)
    return seconds


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        TASKQ_BROKER_URL=os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0"),
        TASKQ_EVENTS=os.environ.get("TASKQ_TEST_EVENTS", "1") == "1",
        TASKQ_EVENTS_MAXLEN=int(os.environ.get("TASKQ_TEST_EVENTS_MAXLEN", "100000")),
    )
    tq.init_app(app)
    return app
