"""The app the beat tests run (``flask --app tests.apps.beat_app taskq beat``).

Its periodic entries come from the environment so each test picks its own:
``BEAT_TEST_SCHEDULE`` is a JSON object in ``TASKQ_BEAT_SCHEDULE``'s format with the
schedule in seconds. The ``record`` task appends ``"<entry> <due>"`` of the beat message
that ran it to the Redis list ``test:beat:runs``.
"""

from __future__ import annotations

import json
import os

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

tq = TaskQueue()


@tq.task(bind=True)
def record(self):
    sent = self.request.headers.get("taskq_beat") or {}
    client = redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])
    client.rpush("test:beat:runs", f"{sent.get('entry')} {sent.get('due')}")


@tq.task
def linger(seconds):
    """Keeps a worker busy (stop-while-running tests)."""
    import time

    redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"]).set("test:beat:lingering", 1)
    time.sleep(seconds)


def create_app() -> Flask:
    app = Flask("beat_app")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config["TASKQ_BEAT_SCHEDULE"] = json.loads(os.environ.get("BEAT_TEST_SCHEDULE", "{}"))
    if "TASKQ_TIMEZONE" in os.environ:
        app.config["TASKQ_TIMEZONE"] = os.environ["TASKQ_TIMEZONE"]
    tq.init_app(app)
    return app
