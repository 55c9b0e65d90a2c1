"""What workers tell Redis about themselves, and how readers get it back.

Each consuming process (a solo or threads worker, or one prefork child) publishes a
heartbeat every ``HEARTBEAT_INTERVAL`` seconds: a JSON document under
``taskq:worker:<process>`` that expires after ``3 * HEARTBEAT_INTERVAL``, so a dead worker
disappears by itself, and its name in the sorted set ``taskq:workers``. With the same
pipeline it adds its task counters to per-minute hashes ``taskq:stats:<minute>`` that
expire after two hours (bounded in size whatever the load). Paused queues are the set
``taskq:paused``.

Run times are counted twice: as a sum (``runtime_ms``) and, for the Prometheus histogram,
one count per task in the bucket its run time falls in (kind ``rt_le_<bound>``, see
:func:`runtime_bucket`). Tasks that fail without being dead-lettered are remembered in a
capped index of recent failures (:meth:`Monitor.failures`), written by the same heartbeat
pipeline: the worker only adds an entry to its counters (:func:`failure_key`).
"""

from __future__ import annotations

import base64
import json
import os
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis

from .keys import Keys

HEARTBEAT_INTERVAL = 2.0
STATS_TTL = 2 * 3600
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
    """Monitoring state in Redis, for workers (writing) and inspectors (reading)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._record_failures: Any = None  # the Lua script, registered when first needed

    # -- worker side -------------------------------------------------------------------------
    def beat(
        self, process: str, info: dict[str, Any], counters: Counter[tuple[str, ...]]
    ) -> set[str]:
        """Publish a heartbeat and counters; return the paused queues (one round trip)."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.worker(process), json.dumps(info), ex=int(3 * HEARTBEAT_INTERVAL))
        pipe.zadd(self.keys.workers(), {process: now})
        pipe.zremrangebyscore(self.keys.workers(), "-inf", now - 3600)
        failures: list[str | float] = []
        if counters:
            key = self.keys.stats(int(now // 60))
            for entry, value in counters.items():
                if entry[0] == FAILURE:
                    failures += self._failure_args(process, entry, value)
                    continue
                kind, queue, task = entry
                pipe.hincrby(key, f"{kind}|{queue}|{task}", int(value))
            pipe.expire(key, STATS_TTL)
        if failures:
            if self._record_failures is None:
                from .redis_common import load_script

                self._record_failures = load_script(self.client, "record_failures")
            self._record_failures(
                keys=[self.keys.failures(), self.keys.failure_records()],
                args=[MAX_FAILURES, *failures],
                client=pipe,
            )
        pipe.smembers(self.keys.paused())
        return {q.decode() for q in pipe.execute()[-1]}

    @staticmethod
    def _failure_args(process: str, entry: tuple[Any, ...], when: float) -> list[str | float]:
        _, queue, task, task_id, body = entry
        record = {
            "id": task_id,
            "task": task,
            "queue": queue,
            "time": when,
            "worker": process,
            "body": None,
        }
        if len(body) <= MAX_FAILURE_BODY:
            record["body"] = base64.b64encode(body).decode()
        return [task_id, when, json.dumps(record)]

    def leave(self, process: str) -> None:
        """Remove a stopping process's heartbeat at once."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.worker(process))
        pipe.zrem(self.keys.workers(), process)
        pipe.execute()

    # -- reader side -------------------------------------------------------------------------
    def processes(self) -> list[dict[str, Any]]:
        """Heartbeats of the consuming processes alive now, oldest start first."""
        names = [n.decode() for n in self.client.zrange(self.keys.workers(), 0, -1)]
        if not names:
            return []
        docs = self.client.mget([self.keys.worker(n) for n in names])
        alive = [json.loads(d) for d in docs if d is not None]
        return sorted(alive, key=lambda d: (d.get("worker", ""), d.get("started", 0)))

    def stats(self, minutes: int = 60) -> list[dict[str, Any]]:
        """Per-minute counters for the last ``minutes`` minutes, oldest first: each row is
        ``{"minute": <unix minute start>, "counts": {(kind, queue, task): value}}``."""
        now_minute = int(time.time() // 60)
        span = range(now_minute - minutes + 1, now_minute + 1)
        pipe = self.client.pipeline(transaction=False)
        for m in span:
            pipe.hgetall(self.keys.stats(m))
        rows = []
        for m, raw in zip(span, pipe.execute(), strict=True):
            counts = {}
            for field, value in raw.items():
                kind, queue, task = field.decode().split("|", 2)
                counts[(kind, queue, task)] = int(value)
            rows.append({"minute": m * 60, "counts": counts})
        return rows

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
        ids = [i.decode() for i in self.client.zrevrange(self.keys.failures(), 0, limit - 1)]
        if not ids:
            return []
        raw = self.client.hmget(self.keys.failure_records(), ids)
        return [_decode_failure(doc) for doc in raw if doc is not None]

    def failure(self, task_id: str) -> dict[str, Any] | None:
        """The recent failure of ``task_id``, or None."""
        doc = self.client.hget(self.keys.failure_records(), task_id)
        return None if doc is None else _decode_failure(doc)

    def failure_count(self) -> int:
        """How many recent failures are kept (at most :data:`MAX_FAILURES`)."""
        return int(self.client.zcard(self.keys.failures()))

    def take_failure(self, task_id: str) -> dict[str, Any] | None:
        """Remove ``task_id`` from the recent failures and return what was kept of it;
        None if it is not there (so two concurrent callers never both get it)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self.keys.failure_records(), task_id)
        pipe.hdel(self.keys.failure_records(), task_id)
        pipe.zrem(self.keys.failures(), task_id)
        doc, deleted, _ = pipe.execute()
        return _decode_failure(doc) if doc is not None and deleted else None

    def paused(self) -> set[str]:
        """Queues workers do not fetch from."""
        return {q.decode() for q in self.client.smembers(self.keys.paused())}

    def pause(self, queues: Iterable[str]) -> None:
        """Stop workers fetching from ``queues`` (within a heartbeat interval)."""
        self.client.sadd(self.keys.paused(), *queues)

    def resume(self, queues: Iterable[str]) -> None:
        """Let workers fetch from ``queues`` again."""
        self.client.srem(self.keys.paused(), *queues)


def _decode_failure(doc: bytes | str) -> dict[str, Any]:
    record = json.loads(doc)
    if record.get("body") is not None:
        record["body"] = base64.b64decode(record["body"])
    return record
