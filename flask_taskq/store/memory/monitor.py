"""The monitor concern of the in-process memory store."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..monitor import STATS_TTL, StatKey


class MemoryMonitorStore:
    """:class:`~flask_taskq.store.monitor.MonitorStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._heartbeats: dict[str, tuple[dict[str, Any], float]] = {}  # doc, expires at
        self._stats: dict[int, Counter[StatKey]] = {}  # unix minute -> counters
        self._failures: dict[str, dict[str, Any]] = {}  # task id -> record, oldest first
        self._paused: set[str] = set()

    def beat(
        self,
        process: str,
        doc: Mapping[str, Any],
        ttl: float,
        counts: Mapping[StatKey, int],
        failures: Sequence[Mapping[str, Any]],
        max_failures: int,
    ) -> set[str]:
        """See :meth:`MonitorStore.beat`."""
        now = time.time()
        with self._lock:
            self._heartbeats[process] = (copy.deepcopy(dict(doc)), now + ttl)
            if counts or failures:
                minute = int(now // 60)
                self._stats.setdefault(minute, Counter()).update(
                    {k: int(v) for k, v in counts.items()}
                )
                for old in [m for m in self._stats if m < minute - STATS_TTL // 60]:
                    del self._stats[old]
            for record in sorted(failures, key=lambda r: float(r["time"])):
                self._failures.pop(record["id"], None)
                self._failures[record["id"]] = dict(record)
            if len(self._failures) > max_failures:
                newest = sorted(self._failures.values(), key=lambda r: float(r["time"]))
                self._failures = {r["id"]: r for r in newest[len(newest) - max_failures :]}
            return set(self._paused)

    def leave(self, process: str) -> None:
        """See :meth:`MonitorStore.leave`."""
        with self._lock:
            self._heartbeats.pop(process, None)

    def processes(self) -> list[dict[str, Any]]:
        """See :meth:`MonitorStore.processes`."""
        now = time.time()
        with self._lock:
            for name in [n for n, (_, until) in self._heartbeats.items() if until <= now]:
                del self._heartbeats[name]
            return [copy.deepcopy(doc) for doc, _ in self._heartbeats.values()]

    def stats(self, minutes: Sequence[int]) -> list[dict[StatKey, int]]:
        """See :meth:`MonitorStore.stats`."""
        with self._lock:
            return [dict(self._stats.get(m, {})) for m in minutes]

    def _newest(self) -> list[dict[str, Any]]:
        return sorted(self._failures.values(), key=lambda r: float(r["time"]), reverse=True)

    def failures(self, limit: int) -> list[dict[str, Any]]:
        """See :meth:`MonitorStore.failures`."""
        with self._lock:
            return [dict(r) for r in self._newest()[:limit]]

    def failure(self, task_id: str) -> dict[str, Any] | None:
        """See :meth:`MonitorStore.failure`."""
        with self._lock:
            record = self._failures.get(task_id)
            return None if record is None else dict(record)

    def failure_count(self) -> int:
        """See :meth:`MonitorStore.failure_count`."""
        with self._lock:
            return len(self._failures)

    def take_failure(self, task_id: str) -> dict[str, Any] | None:
        """See :meth:`MonitorStore.take_failure`."""
        with self._lock:
            return self._failures.pop(task_id, None)

    def restore_failure(self, record: Mapping[str, Any]) -> None:
        """See :meth:`MonitorStore.restore_failure`."""
        with self._lock:
            self._failures.setdefault(record["id"], dict(record))

    def paused(self) -> set[str]:
        """See :meth:`MonitorStore.paused`."""
        with self._lock:
            return set(self._paused)

    def pause(self, queues: Iterable[str]) -> None:
        """See :meth:`MonitorStore.pause`."""
        with self._lock:
            self._paused.update(queues)

    def resume(self, queues: Iterable[str]) -> None:
        """See :meth:`MonitorStore.resume`."""
        with self._lock:
            self._paused.difference_update(queues)
