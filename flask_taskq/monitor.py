"""What workers tell the store about themselves, and how readers get it back.

Each consuming process (a solo or threads worker, or one prefork child) publishes a
heartbeat every ``HEARTBEAT_INTERVAL`` seconds: a JSON document that expires after
``3 * HEARTBEAT_INTERVAL``, so a dead worker disappears by itself. In the same step
(one round trip on Redis) it adds its task counters to per-minute counters kept two
hours (bounded in size whatever the load) and learns the paused queues. Where the store
keeps them: :mod:`flask_taskq.store.monitor` and its Redis and memory implementations.

Run times are counted twice: as a sum (``runtime_ms``) and, for the Prometheus histogram,
one count per task in the bucket its run time falls in (kind ``rt_le_<bound>``, see
:func:`runtime_bucket`). Tasks that fail without being dead-lettered are remembered in a
capped index of recent failures (:meth:`Monitor.failures`), written by the same heartbeat
step: the worker only adds an entry to its counters (:func:`failure_key`).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .store.monitor import STATS_TTL as STATS_TTL
from .store.monitor import MonitorStore, StatKey

HEARTBEAT_INTERVAL = 2.0
STAT_KINDS = ("processed", "failed", "retried", "runtime_ms")

#: Upper bounds (seconds, inclusive) of the run-time histogram's buckets; a last bucket
#: (``+Inf``) takes longer runs. Prometheus' default buckets.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The counter kind of each bucket, ``RUNTIME_BUCKETS`` order then ``+Inf``.
BUCKET_KINDS = (*(f"rt_le_{b!r}" for b in RUNTIME_BUCKETS), "rt_le_+Inf")
#: Bucket kind -> its upper bound as the Prometheus ``le`` label.
BUCKET_LE = {kind: kind[6:] for kind in BUCKET_KINDS}
#: Kind of a failure entry in a worker's counters (see :func:`failure_key`).
FAILURE = "failure"
#: Recent failures kept (:meth:`Monitor.failures`); older ones are trimmed.
MAX_FAILURES = 1000
#: Largest message body kept with a failure (bytes): larger ones cannot be retried from
#: the dashboard, whose Retry sends the kept body again.
MAX_FAILURE_BODY = 16 * 1024


def runtime_bucket(seconds: float) -> str:
    """The counter kind of the histogram bucket ``seconds`` falls in (``rt_le_0.01``):
    the smallest bound at least ``seconds``, else ``rt_le_+Inf``."""
    return BUCKET_KINDS[bisect_left(RUNTIME_BUCKETS, seconds)]


def failure_key(queue: str, task: str, task_id: str, body: bytes) -> tuple[str, ...]:
    """The counters entry a worker adds (with the unix time as its value) for a task that
    failed without being dead-lettered; :meth:`Monitor.beat` moves it to the index of
    recent failures."""
    return (FAILURE, queue, task, task_id, body)  # type: ignore[return-value]


def rss_bytes() -> int:
    """Resident memory of this process (Linux; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Monitor:
    """Monitoring state in the store, for workers (writing) and inspectors (reading)."""

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    # -- worker side -------------------------------------------------------------------------
    def beat(
        self, process: str, info: dict[str, Any], counters: Counter[tuple[str, ...]]
    ) -> set[str]:
        """Publish a heartbeat and counters; return the paused queues (one round trip)."""
        counts: dict[StatKey, int] = {}
        failures: list[dict[str, Any]] = []
        for entry, value in counters.items():
            if entry[0] == FAILURE:
                failures.append(_failure_record(process, entry, value))
            else:
                kind, queue, task = entry
                counts[(kind, queue, task)] = int(value)
        ttl = 3 * HEARTBEAT_INTERVAL
        return self.store.beat(process, info, ttl, counts, failures, MAX_FAILURES)

    def leave(self, process: str) -> None:
        """Remove a stopping process's heartbeat at once."""
        self.store.leave(process)

    # -- reader side -------------------------------------------------------------------------
    def processes(self) -> list[dict[str, Any]]:
        """Heartbeats of the consuming processes alive now, oldest start first."""
        alive = self.store.processes()
        return sorted(alive, key=lambda d: (d.get("worker", ""), d.get("started", 0)))

    def stats(self, minutes: int = 60) -> list[dict[str, Any]]:
        """Per-minute counters for the last ``minutes`` minutes, oldest first: each row is
        ``{"minute": <unix minute start>, "counts": {(kind, queue, task): value}}``."""
        now_minute = int(time.time() // 60)
        span = range(now_minute - minutes + 1, now_minute + 1)
        rows = self.store.stats(span)
        return [{"minute": m * 60, "counts": c} for m, c in zip(span, rows, strict=True)]

    def totals(self, minutes: int = 60) -> dict[tuple[str, str, str], int]:
        """Counters summed over the last ``minutes`` minutes."""
        total: Counter[tuple[str, str, str]] = Counter()
        for row in self.stats(minutes):
            total.update(row["counts"])
        return dict(total)

    def failures(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` tasks that failed without being dead-lettered, newest
        first: ``{"id", "task", "queue", "time", "worker", "body"}`` where ``body`` is the
        message (bytes) or None when it was too large to keep."""
        if limit <= 0:
            return []
        return self.store.failures(limit)

    def failure(self, task_id: str) -> dict[str, Any] | None:
        """The recent failure of ``task_id``, or None."""
        return self.store.failure(task_id)

    def failure_count(self) -> int:
        """How many recent failures are kept (at most :data:`MAX_FAILURES`)."""
        return self.store.failure_count()

    def take_failure(self, task_id: str) -> dict[str, Any] | None:
        """Remove ``task_id`` from the recent failures and return what was kept of it;
        None if it is not there (so two concurrent callers never both get it)."""
        return self.store.take_failure(task_id)

    def restore_failure(self, record: dict[str, Any]) -> None:
        """Put back a record :meth:`take_failure` returned, when sending it failed."""
        self.store.restore_failure(record)

    def paused(self) -> set[str]:
        """Queues workers do not fetch from."""
        return self.store.paused()

    def pause(self, queues: Iterable[str]) -> None:
        """Stop workers fetching from ``queues`` (within a heartbeat interval)."""
        self.store.pause(queues)

    def resume(self, queues: Iterable[str]) -> None:
        """Let workers fetch from ``queues`` again."""
        self.store.resume(queues)


def _failure_record(process: str, entry: tuple[Any, ...], when: float) -> dict[str, Any]:
    _, queue, task, task_id, body = entry
    return {
        "id": task_id,
        "task": task,
        "queue": queue,
        "time": when,
        "worker": process,
        "body": body if len(body) <= MAX_FAILURE_BODY else None,
    }
