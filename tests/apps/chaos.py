"""The app of the task-control tests that need time, routing, priorities or crashes:
countdown and eta, two routed queues, priority order, and a task that kills its own process.

Tasks record what happens to them in Redis (``chaos:*`` keys) so tests can see it from
outside the worker processes.
"""

from __future__ import annotations

import os
import signal
import time

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

tq = TaskQueue()

#: ``to_a`` goes to queue ``qa`` by its exact name, ``to_b*`` to ``qb`` by a glob.
ROUTES = {"tests.apps.chaos.to_a": "qa", "tests.apps.chaos.to_b*": {"queue": "qb"}}


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def stamp(token):
    """Note when ``token`` started (hash ``chaos:started_at``) and count its runs (hash
    ``chaos:runs``)."""
    r = _redis()
    r.hset("chaos:started_at", token, time.time())
    r.hincrby("chaos:runs", token, 1)
    return token


@tq.task
def note(label):
    """Append ``label`` to the list ``chaos:order``: the order in which tasks started."""
    _redis().rpush("chaos:order", label)
    return label


@tq.task
def to_a():
    """Routed to ``qa``; returns the pid of the process that ran it."""
    return os.getpid()


@tq.task
def to_b():
    """Routed to ``qb`` by the glob ``to_b*``; returns the pid that ran it."""
    return os.getpid()


@tq.task
def to_b_too():
    """Also routed to ``qb`` by the glob; returns the pid that ran it."""
    return os.getpid()


@tq.task
def suicide(token):
    """Count a start of ``token`` (hash ``chaos:starts``), then SIGKILL its own process:
    the task never finishes, as when a worker crashes in the middle of it."""
    _redis().hincrby("chaos:starts", token, 1)
    os.kill(os.getpid(), signal.SIGKILL)


def create_app() -> Flask:
    app = Flask("chaos")
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config["TASKQ_ROUTES"] = ROUTES
    if "TASKQ_VISIBILITY_TIMEOUT" in os.environ:
        app.config["TASKQ_VISIBILITY_TIMEOUT"] = float(os.environ["TASKQ_VISIBILITY_TIMEOUT"])
    if "TASKQ_MAX_DELIVERIES" in os.environ:
        app.config["TASKQ_MAX_DELIVERIES"] = int(os.environ["TASKQ_MAX_DELIVERIES"])
    tq.init_app(app)
    return app
