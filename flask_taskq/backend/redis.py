"""Results in Redis: one string per task plus a 'done' list that wakes waiters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from ..broker.redis import MAX_BLOCK, connect, load_script
from ..keys import Keys
from ..serializer import Serializer, get_serializer
from ..states import READY_STATES


class RedisBackend:
    """Result backend over Redis (``TASKQ_RESULT_BACKEND = "redis://..."``)."""

    def __init__(self, url: str, key_prefix: str = "taskq",
                 serializer: Serializer | None = None,
                 client: redis.Redis | None = None) -> None:
        self.url = url
        self.keys = Keys(key_prefix)
        self.serializer = serializer or get_serializer("json")
        self.client = client or connect(url)
        self._store = load_script(self.client, "store_result")

    def store_many(self, items: Sequence[tuple[str, bytes, bool]], ttl: int) -> None:
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)
        for task_id, data, ready in items:
            self._store(
                keys=[self.keys.result(task_id), self.keys.done(task_id)],
                args=[data, ttl, 1 if ready else 0],
                client=pipe,
            )
        pipe.execute()

    def get(self, task_id: str) -> dict[str, Any] | None:
        data = self.client.get(self.keys.result(task_id))
        return None if data is None else self.serializer.loads(data)

    def get_many(self, task_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The state documents of ``task_ids`` (None where unknown), in one round trip."""
        if not task_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.get(self.keys.result(task_id))
        return [None if data is None else self.serializer.loads(data)
                for data in pipe.execute()]

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        # BLMOVE of the done list onto itself blocks until the worker pushes to it and
        # leaves the element in place, so every waiter wakes; no polling.
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.keys.done(task_id)
        while True:
            meta = self.get(task_id)
            if meta is not None and meta.get("status") in READY_STATES:
                return meta
            block = MAX_BLOCK
            if deadline is not None:
                block = min(block, deadline - time.monotonic())
                if block <= 0:
                    return None
            self.client.blmove(done, done, max(block, 0.01), "RIGHT", "RIGHT")

    def forget(self, task_id: str) -> None:
        self.client.delete(self.keys.result(task_id), self.keys.done(task_id))

    def close(self) -> None:
        self.client.close()
