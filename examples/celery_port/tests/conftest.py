"""Test set-up of the example, as a user of flask-taskq would write it.

The suite needs a Redis for the in-thread worker: this starts a throwaway
``redis-server`` on a free port (your project may point ``TEST_REDIS_URL`` at one
instead). The ``taskq_worker`` and ``taskq_eager`` fixtures come from
``flask_taskq.testing`` (a pytest plugin installed with flask-taskq) and use the ``app``
fixture below.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from flask import Flask


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("FLASK_TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("FLASK_TASKQ_RESULT_BACKEND", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    from examples.celery_port import create_app

    app = create_app()
    app.config["TESTING"] = True
    return app
