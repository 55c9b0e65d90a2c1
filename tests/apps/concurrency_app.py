"""The app of the per-key concurrency tests (``tests/test_concurrency.py``), on Redis or
``memory://`` (``create_app`` reads ``TASKQ_BROKER_URL``, ``TASKQ_RESULT_BACKEND`` and
``TASKQ_VISIBILITY_TIMEOUT``, and for RabbitMQ ``TASKQ_STORE_URL`` and
``TASKQ_KEY_PREFIX``, from the environment, so a worker process can load it).

Tasks record their runs in the test Redis (``TEST_REDIS_URL``): ``test:running`` (hash:
key -> tasks of that key running now, raised and lowered atomically), ``test:max`` (hash:
key -> the most ever seen running at once), ``test:started`` and ``test:done`` (lists of
tokens). On ``memory://`` they record in a dict of this module instead.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()

#: Raise the running count of a key and keep the highest value seen, atomically.
ENTER = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], n)
end
redis.call('RPUSH', KEYS[3], ARGV[2])
return n
"""


class Memory:
    """What the tasks record on ``memory://``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.max: dict[str, int] = {}
        self.started: list[str] = []
        self.done: list[str] = []
        self.blocked = threading.Event()


memory = Memory()


def _redis() -> redis.Redis | None:
    url = os.environ.get("TEST_REDIS_URL")
    return redis.Redis.from_url(url) if url else None


def _run(key: str, token: str, seconds: float) -> None:
    r = _redis()
    if r is None:
        with memory.lock:
            n = memory.running[key] = memory.running.get(key, 0) + 1
            memory.max[key] = max(n, memory.max.get(key, 0))
            memory.started.append(token)
        _sleep(seconds, lambda: memory.blocked.is_set())
        with memory.lock:
            memory.running[key] -= 1
            memory.done.append(token)
        return
    r.eval(ENTER, 3, "test:running", "test:max", "test:started", key, token)
    _sleep(seconds, lambda: bool(r.exists("test:block")))
    r.hincrby("test:running", key, -1)
    r.rpush("test:done", token)


def _sleep(seconds: float, blocked: Any) -> None:
    """Sleep ``seconds``, then on while the test blocks (at most a minute)."""
    time.sleep(seconds)
    deadline = time.monotonic() + 60
    while blocked() and time.monotonic() < deadline:
        time.sleep(0.05)


@tq.task(concurrency_key="customer", concurrency_limit=2)
def work(customer: str, token: str, seconds: float = 0.2) -> str:
    """At most two of one customer at once; the key is an argument named by a string
    (found by position here)."""
    _run(customer, token, seconds)
    return token


@tq.task(bind=True, concurrency_key=lambda customer_id, **kw: customer_id, concurrency_limit=1)
def hold(self: Any, customer_id: str, token: str, seconds: float = 0.0) -> str:
    """One per customer at once; the key from a callable; a bound task."""
    _run(f"hold:{customer_id}", token, seconds)
    return token


@tq.task
def other(token: str) -> str:
    """No limit: runs while the limited ones wait."""
    r = _redis()
    if r is None:
        with memory.lock:
            memory.done.append(token)
    else:
        r.rpush("test:other", token)
    return token


@tq.task(concurrency_key=lambda customer: customer["id"], concurrency_limit=1)
def badkey(customer: Any) -> str:
    """Its key function raises for a customer without an id."""
    return "ran"


def create_app(**config: Any) -> Flask:
    """The app on the transport the environment (or ``config``) names."""
    app = Flask("concurrency_app")
    url = os.environ.get("TASKQ_BROKER_URL", "memory://")
    app.config["TASKQ_BROKER_URL"] = url
    app.config["TASKQ_RESULT_BACKEND"] = os.environ.get("TASKQ_RESULT_BACKEND", url) or None
    app.config["TASKQ_VISIBILITY_TIMEOUT"] = float(os.environ.get("TASKQ_VISIBILITY_TIMEOUT", 30))
    for name in ("TASKQ_STORE_URL", "TASKQ_KEY_PREFIX"):  # the RabbitMQ test's
        if os.environ.get(name):
            app.config[name] = os.environ[name]
    app.config.update(config)
    tq.init_app(app)
    return app
