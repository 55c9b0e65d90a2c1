"""The replay concern of the in-process memory store."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ..replay import Start

#: Where an attempt started: (queue, priority, entry id).
_Where = tuple[str, int, str]


class MemoryReplayStore:
    """:class:`~flask_taskq.store.replay.ReplayStore` in this process's memory. It cannot
    see results, so a first delivery of a task that has one is not refused (on
    ``memory://`` nobody outside this process can send a message anyway)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._seen: dict[str, tuple[int, _Where, float]] = {}  # task id -> start, expires

    def start(self, start: Start, ttl: int, first_delivery: bool) -> str | None:
        """See :meth:`ReplayStore.start`."""
        now = time.time()
        where = (start.queue, start.priority, start.entry_id)
        with self._lock:
            old = self._seen.get(start.task_id)
            if old is not None and old[2] > now:
                was, at, _ = old
                if was > start.attempt or (was == start.attempt and at != where):
                    return f"attempt {was} already started from {at[0]}/{at[1]} {at[2]}"
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v[2] > now}
            self._seen[start.task_id] = (start.attempt, where, now + ttl)
            return None

    def forget_starts(self, starts: Sequence[Start]) -> None:
        """See :meth:`ReplayStore.forget_starts`."""
        with self._lock:
            for start in starts:
                old = self._seen.get(start.task_id)
                where = (start.queue, start.priority, start.entry_id)
                if old is not None and old[:2] == (start.attempt, where):
                    del self._seen[start.task_id]

    def forget(self, task_ids: Sequence[str]) -> None:
        """See :meth:`ReplayStore.forget`."""
        with self._lock:
            for task_id in task_ids:
                self._seen.pop(task_id, None)
