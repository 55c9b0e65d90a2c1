"""Helpers for testing an app that uses flask-taskq (also a pytest plugin).

``InThreadWorker(app)`` runs a real worker on a thread of the test process against the
app's broker (use a Redis URL of your test setup) and ``drain()`` waits until every queue
is empty and every task has finished. ``eager(app)`` runs tasks inline instead.

Fixtures (they use your ``app`` fixture, as pytest-flask does):

- ``taskq_worker``: an ``InThreadWorker`` for ``app``, stopped after the test.
- ``taskq_eager``: ``app`` with ``TASKQ_ALWAYS_EAGER`` on for the test.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from flask import Flask

from .backend.memory import MemoryBackend
from .broker import Broker
from .exceptions import TimeoutError as TaskTimeoutError
from .worker import Worker


def _unfinished(broker: Broker, queues: Sequence[str]) -> int:
    """Messages of ``queues`` waiting or leased and not yet acknowledged.

    The ready count alone misses a message between its fetch and the consumer taking
    hold of it, and ``drain()`` then returned before that task ran.
    """
    return sum(stats.unfinished for stats in broker.queue_stats(queues).values())


class InThreadWorker:
    """A worker running on a background thread of this process (threads pool)."""

    def __init__(
        self, app: Flask, queues: Sequence[str] | None = None, concurrency: int = 1
    ) -> None:
        self.app = app
        self.worker = Worker(
            app, queues=queues, pool="threads", concurrency=concurrency, install_signals=False
        )
        self._thread = threading.Thread(
            target=self.worker.run, name="taskq-test-worker", daemon=True
        )

    def start(self) -> InThreadWorker:
        """Start consuming."""
        self._thread.start()
        return self

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the worker's queues are empty and it holds no task."""
        broker = self.worker.state.broker
        deadline = time.monotonic() + timeout
        while True:
            consumer = self.worker.consumer
            if (
                consumer is not None
                and consumer.held == 0
                and _unfinished(broker, self.worker.queues) == 0
            ):
                return
            if time.monotonic() > deadline:
                raise TaskTimeoutError(f"queues not drained after {timeout} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully and wait for the thread."""
        self.worker.stop()
        self._thread.join(timeout)

    def __enter__(self) -> InThreadWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def eager(app: Flask) -> Iterator[Flask]:
    """Run ``.delay()`` inline for ``app`` inside the block (``TASKQ_ALWAYS_EAGER``)."""
    state = app.extensions["taskq"]
    saved = state.eager, state.backend, app.config["TASKQ_ALWAYS_EAGER"]
    state.eager = True
    state.backend = MemoryBackend(serializer=state.serializer)
    app.config["TASKQ_ALWAYS_EAGER"] = True
    try:
        yield app
    finally:
        state.eager, state.backend, app.config["TASKQ_ALWAYS_EAGER"] = saved


@pytest.fixture
def taskq_worker(app: Flask) -> Iterator[InThreadWorker]:
    """A real worker on a thread, consuming ``app``'s queues for the test."""
    with InThreadWorker(app) as worker:
        yield worker


@pytest.fixture
def taskq_eager(app: Flask) -> Iterator[Any]:
    """``app`` with tasks run inline for the test."""
    with eager(app):
        yield app
