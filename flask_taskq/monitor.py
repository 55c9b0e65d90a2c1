"""What workers tell Redis about themselves, and how readers get it back.

Each consuming process (a solo or threads worker, or one prefork child) publishes a
heartbeat every ``HEARTBEAT_INTERVAL`` seconds: a JSON document under
``taskq:worker:<process>`` that expires after ``3 * HEARTBEAT_INTERVAL``, so a dead worker
disappears by itself, and its name in the sorted set ``taskq:workers``. With the same
pipeline it adds its task counters to per-minute hashes ``taskq:stats:<minute>`` that
expire after two hours (bounded in size whatever the load). Paused queues are the set
``taskq:paused``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis

from .keys import Keys

HEARTBEAT_INTERVAL = 2.0
STATS_TTL = 2 * 3600
STAT_KINDS = ("processed", "failed", "retried", "runtime_ms")


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

    # -- worker side -------------------------------------------------------------------------
    def beat(self, process: str, info: dict[str, Any], counters: Counter[tuple[str, ...]]
             ) -> set[str]:
        """Publish a heartbeat and counters; return the paused queues (one round trip)."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.worker(process), json.dumps(info), ex=int(3 * HEARTBEAT_INTERVAL))
        pipe.zadd(self.keys.workers(), {process: now})
        pipe.zremrangebyscore(self.keys.workers(), "-inf", now - 3600)
        if counters:
            key = self.keys.stats(int(now // 60))
            for (kind, queue, task), value in counters.items():
                pipe.hincrby(key, f"{kind}|{queue}|{task}", int(value))
            pipe.expire(key, STATS_TTL)
        pipe.smembers(self.keys.paused())
        return {q.decode() for q in pipe.execute()[-1]}

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

    def paused(self) -> set[str]:
        """Queues workers do not fetch from."""
        return {q.decode() for q in self.client.smembers(self.keys.paused())}

    def pause(self, queues: Iterable[str]) -> None:
        """Stop workers fetching from ``queues`` (within a heartbeat interval)."""
        self.client.sadd(self.keys.paused(), *queues)

    def resume(self, queues: Iterable[str]) -> None:
        """Let workers fetch from ``queues`` again."""
        self.client.srem(self.keys.paused(), *queues)
