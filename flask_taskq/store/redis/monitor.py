"""The monitor concern of the Redis store.

Each process's heartbeat is a JSON document under ``taskq:worker:<process>`` (with a TTL)
and its name in the sorted set ``taskq:workers``; counters are per-minute hashes
``taskq:stats:<minute>`` (field ``kind|queue|task``); recent failures are the sorted set
``taskq:failures`` (task id by time) beside the hash ``taskq:failures:records`` (task id ->
JSON record, the body base64); paused queues are the set ``taskq:paused``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...keys import Keys
from ...redis_common import load_script, mget, reload_scripts
from ..monitor import PROCESS_LIST_TTL, STATS_TTL, StatKey


class RedisMonitorStore:
    """:class:`~flask_taskq.store.monitor.MonitorStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._record_failures: Any = None  # the Lua script, registered when first needed

    def beat(
        self,
        process: str,
        doc: Mapping[str, Any],
        ttl: float,
        counts: Mapping[StatKey, int],
        failures: Sequence[Mapping[str, Any]],
        max_failures: int,
    ) -> set[str]:
        """See :meth:`MonitorStore.beat`: one round trip."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.worker(process), json.dumps(doc), ex=int(ttl))
        pipe.zadd(self.keys.workers(), {process: now})
        pipe.zremrangebyscore(self.keys.workers(), "-inf", now - PROCESS_LIST_TTL)
        if counts or failures:
            key = self.keys.stats(int(now // 60))
            for (kind, queue, task), value in counts.items():
                pipe.hincrby(key, f"{kind}|{queue}|{task}", int(value))
            pipe.expire(key, STATS_TTL)
        if failures:
            if self._record_failures is None:
                self._record_failures = load_script(self.client, "record_failures")
            args: list[str | float] = [max_failures]
            for record in failures:
                args += [record["id"], record["time"], _encode_failure(record)]
            self._record_failures(
                keys=[self.keys.failures(), self.keys.failure_records()], args=args, client=pipe
            )
        pipe.smembers(self.keys.paused())
        replies = pipe.execute(raise_on_error=False)
        if self._record_failures is not None:
            reload_scripts(self.client, [self._record_failures], replies)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return {q.decode() if isinstance(q, bytes) else q for q in replies[-1]}

    def leave(self, process: str) -> None:
        """See :meth:`MonitorStore.leave`."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.worker(process))
        pipe.zrem(self.keys.workers(), process)
        pipe.execute()

    def processes(self) -> list[dict[str, Any]]:
        """See :meth:`MonitorStore.processes`."""
        names = [_text(n) for n in self.client.zrange(self.keys.workers(), 0, -1)]
        if not names:
            return []
        docs = mget(self.client, [self.keys.worker(n) for n in names])
        return [json.loads(d) for d in docs if d is not None]

    def stats(self, minutes: Sequence[int]) -> list[dict[StatKey, int]]:
        """See :meth:`MonitorStore.stats`: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for minute in minutes:
            pipe.hgetall(self.keys.stats(minute))
        rows = []
        for raw in pipe.execute():
            counts: dict[StatKey, int] = {}
            for field, value in raw.items():
                kind, queue, task = _text(field).split("|", 2)
                counts[(kind, queue, task)] = int(value)
            rows.append(counts)
        return rows

    def failures(self, limit: int) -> list[dict[str, Any]]:
        """See :meth:`MonitorStore.failures`."""
        ids = [_text(i) for i in self.client.zrevrange(self.keys.failures(), 0, limit - 1)]
        if not ids:
            return []
        raw = self.client.hmget(self.keys.failure_records(), ids)
        return [_decode_failure(doc) for doc in raw if doc is not None]

    def failure(self, task_id: str) -> dict[str, Any] | None:
        """See :meth:`MonitorStore.failure`."""
        doc = self.client.hget(self.keys.failure_records(), task_id)
        return None if doc is None else _decode_failure(doc)

    def failure_count(self) -> int:
        """See :meth:`MonitorStore.failure_count`."""
        return int(self.client.zcard(self.keys.failures()))

    def take_failure(self, task_id: str) -> dict[str, Any] | None:
        """See :meth:`MonitorStore.take_failure`: a transaction."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self.keys.failure_records(), task_id)
        pipe.hdel(self.keys.failure_records(), task_id)
        pipe.zrem(self.keys.failures(), task_id)
        doc, deleted, _ = pipe.execute()
        return _decode_failure(doc) if doc is not None and deleted else None

    def restore_failure(self, record: Mapping[str, Any]) -> None:
        """See :meth:`MonitorStore.restore_failure`: a transaction, with NX writes."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hsetnx(self.keys.failure_records(), record["id"], _encode_failure(record))
        pipe.zadd(self.keys.failures(), {record["id"]: float(record["time"])}, nx=True)
        pipe.execute()

    def paused(self) -> set[str]:
        """See :meth:`MonitorStore.paused`."""
        return {_text(q) for q in self.client.smembers(self.keys.paused())}

    def pause(self, queues: Iterable[str]) -> None:
        """See :meth:`MonitorStore.pause`."""
        names = list(queues)
        if names:
            self.client.sadd(self.keys.paused(), *names)

    def resume(self, queues: Iterable[str]) -> None:
        """See :meth:`MonitorStore.resume`."""
        names = list(queues)
        if names:
            self.client.srem(self.keys.paused(), *names)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _encode_failure(record: Mapping[str, Any]) -> str:
    body = record.get("body")
    return json.dumps({**record, "body": None if body is None else base64.b64encode(body).decode()})


def _decode_failure(doc: bytes | str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(doc)
    if record.get("body") is not None:
        record["body"] = base64.b64decode(record["body"])
    return record
