"""Task events (``TASKQ_EVENTS``): what happened to each task, published to a capped
stream in the store (Redis: the key ``<prefix>:events``) that any tool can tail with
``XREAD``, and that ``flask taskq events`` prints.

Each event is a flat stream entry of text fields (see docs/observability.rst):
``type`` (one of :data:`EVENT_TYPES`), ``id``, ``task``, ``queue``, ``ts`` (unix time),
``hostname`` (the worker process, or the sender's ``pid@host``), plus per type
``retries``, ``runtime``, ``exception``, ``eta``, ``reason``.

Publishing never costs a round trip per event: :meth:`EventPublisher.emit` appends to a
buffer in memory, and a background thread of the process writes what gathered in one
pipeline at most every :data:`FLUSH_INTERVAL` seconds (and once more at exit). Events
are best-effort: while the store is unreachable they are kept up to
:data:`MAX_PENDING`, then the oldest are dropped; a task never waits for them.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import AppState
    from .store.events import EventStore

logger = logging.getLogger("flask_taskq.events")

#: The event types, in the order of a task's life.
EVENT_TYPES = (
    "task-sent",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-revoked",
    "task-dead-lettered",
)
#: Longest an event waits in the buffer before the background thread writes it (s); also
#: the shortest time between two writes, so a busy process writes at most 20 times a
#: second whatever its task rate.
FLUSH_INTERVAL = 0.05
#: Events kept in memory while the store cannot be written; beyond, the oldest go.
MAX_PENDING = 10_000


class EventPublisher:
    """Buffers events and writes them to ``store`` from a background thread."""

    def __init__(self, store: EventStore, maxlen: int, hostname: str) -> None:
        self.store = store
        self.maxlen = maxlen
        self.hostname = hostname
        self.dropped = 0
        self._reset()
        _publishers.add(self)

    def _reset(self) -> None:
        """Start afresh (also in a forked child: its own buffer, lock and thread)."""
        self._pid = os.getpid()
        # (type, task id, task, queue, unix time, other fields)
        self._pending: list[tuple[str, str, str, str, float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        # one flush at a time: a flush returns once what was emitted before it is written,
        # also when the background thread took part of it a moment earlier
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def emit(self, kind: str, task_id: str, task: str, queue: str, **fields: Any) -> None:
        """Publish one event (soon, in a batch); ``fields`` with a None value are left
        out, the others are written as text. Costs an append: the event is encoded by
        the background thread."""
        event = (kind, task_id, task, queue, time.time(), fields)
        with self._lock:
            pending = self._pending
            pending.append(event)
            if len(pending) > MAX_PENDING:
                excess = len(pending) - MAX_PENDING + MAX_PENDING // 10
                del pending[:excess]
                self.dropped += excess
            first = len(pending) == 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskq-events", daemon=True)
                self._thread.start()
        if first:
            self._wake.set()

    def _encode(
        self, batch: list[tuple[str, str, str, str, float, dict[str, Any]]]
    ) -> list[list[str]]:
        hostname = self.hostname
        rows = []
        for kind, task_id, task, queue, ts, fields in batch:
            row = ["type", kind, "id", task_id, "task", task, "queue", queue]
            row += ("ts", f"{ts:.6f}", "hostname", hostname)
            for name, value in fields.items():
                if value is not None:
                    row += (name, value if type(value) is str else str(value))
            rows.append(row)
        return rows

    def flush(self) -> bool:
        """Write what is buffered now (waiting for a flush already on its way); False
        (and the events kept) when the store refused."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return True
        try:
            self.store.publish(self._encode(batch), self.maxlen)
        except Exception as exc:  # best-effort: keep them for the next attempt
            with self._lock:
                self._pending[:0] = batch
                excess = len(self._pending) - MAX_PENDING
                if excess > 0:
                    del self._pending[:excess]
                    self.dropped += excess
            if not self._failing:
                self._failing = True
                logger.warning("Could not publish task events (%s: %s)", type(exc).__name__, exc)
            return False
        if self._failing:
            self._failing = False
            logger.warning("Publishing task events again")
        return True

    def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.wait()
                self._wake.clear()
            started = time.monotonic()
            pause = FLUSH_INTERVAL if self.flush() else 1.0
            time.sleep(max(0.0, pause - (time.monotonic() - started)))


#: Every publisher of this process, flushed at exit.
_publishers: weakref.WeakSet[EventPublisher] = weakref.WeakSet()
#: The sending side's publisher of each app state.
_senders: weakref.WeakKeyDictionary[AppState, EventPublisher] = weakref.WeakKeyDictionary()


def enabled(state: AppState) -> bool:
    """Whether ``state``'s app publishes events (``TASKQ_EVENTS``)."""
    return bool(state.config["TASKQ_EVENTS"])


def publisher(store: EventStore, state: AppState, hostname: str) -> EventPublisher:
    """A publisher writing to ``store`` with ``state``'s ``TASKQ_EVENTS_MAXLEN``."""
    return EventPublisher(store, int(state.config["TASKQ_EVENTS_MAXLEN"]), hostname)


def sender(state: AppState) -> EventPublisher:
    """The publisher of ``task-sent`` events for ``state`` (made once)."""
    found = _senders.get(state)
    if found is None:
        found = _senders[state] = publisher(
            state.store.events, state, f"{os.getpid()}@{socket.gethostname()}"
        )
    return found


def sent(state: AppState, task_id: str, task: str, queue: str, eta: float | None = None) -> None:
    """Publish ``task-sent`` (callers check :func:`enabled` first)."""
    sender(state).emit("task-sent", task_id, task, queue, eta=None if eta is None else f"{eta:.6f}")


def _after_fork() -> None:
    for pub in list(_publishers):
        pub._reset()


os.register_at_fork(after_in_child=_after_fork)


@atexit.register
def flush_all() -> None:
    """Write what every publisher of this process has buffered (at exit; a prefork
    child, which leaves with ``os._exit``, calls it itself)."""
    for pub in list(_publishers):
        if pub._pid == os.getpid():
            pub.flush()
