"""Results in Redis: one string per task plus a 'done' list that wakes waiters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import redis

from ..broker.direct import DirectCommands
from ..exceptions import BrokerConnectionError
from ..keys import Keys
from ..redis_common import (
    ERRORS,
    MAX_BLOCK,
    SOCKET_TIMEOUT,
    connect,
    load_script,
    reload_scripts,
)
from ..serializer import Serializer, get_serializer
from ..states import READY_STATES


class RedisBackend:
    """Result backend over Redis (``TASKQ_RESULT_BACKEND = "redis://..."``)."""

    errors = ERRORS

    def __init__(
        self,
        url: str,
        key_prefix: str = "taskq",
        serializer: Serializer | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = url
        self.keys = Keys(key_prefix)
        self.serializer = serializer or get_serializer("json")
        #: ``redis.Redis`` (or ``redis.RedisCluster``), handled as ``Any`` like the broker's.
        self.client: Any = client or connect(url)
        self._store = load_script(self.client, "store_result")
        self._direct = DirectCommands(self.client)

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
        replies = pipe.execute(raise_on_error=False)
        reload_scripts(self.client, [self._store], replies)
        _raise_first(replies)

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
        return [None if data is None else self.serializer.loads(data) for data in pipe.execute()]

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        """Block until the task is ready and return its state document; None once
        ``timeout`` seconds have passed. Every read from Redis is bounded by the time
        left, so a frozen server cannot hold the caller longer; while Redis is
        unreachable the wait retries until ``timeout``, then raises
        :class:`~flask_taskq.BrokerConnectionError` (at once without a ``timeout``)."""
        # BLMOVE of the done list onto itself blocks until the worker pushes to it and
        # leaves the element in place, so every waiter wakes; no polling.
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.keys.done(task_id)
        result = self.keys.result(task_id)
        backoff = 0.05
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                # A reply is not waited for longer than the time left, plus a little to
                # let an answer that is on its way arrive.
                data = self._direct.command(
                    "GET", result, timeout=SOCKET_TIMEOUT if left is None else max(left, 0) + 0.25
                )
                meta: dict[str, Any] | None = None if data is None else self.serializer.loads(data)
                if meta is not None and meta.get("status") in READY_STATES:
                    return meta
                block = MAX_BLOCK if left is None else min(MAX_BLOCK, left)
                if block <= 0:
                    return None
                block = max(block, 0.01)
                self._direct.command(
                    "BLMOVE",
                    done,
                    done,
                    "RIGHT",
                    "RIGHT",
                    block,
                    timeout=SOCKET_TIMEOUT if left is None else block + 0.25,
                )
                backoff = 0.05
            except redis.TimeoutError as exc:
                if deadline is None:
                    raise BrokerConnectionError(
                        f"Redis at the result backend did not answer: {exc}"
                    ) from exc
                if time.monotonic() >= deadline:
                    return None
            except redis.ConnectionError as exc:
                if deadline is None or time.monotonic() + backoff >= deadline:
                    raise BrokerConnectionError(
                        f"cannot reach the result backend while waiting for task {task_id}: {exc}"
                    ) from exc
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def forget(self, task_id: str) -> None:
        self.client.delete(self.keys.result(task_id), self.keys.done(task_id))

    def save_group(self, group_id: str, data: bytes, ttl: int) -> None:
        self.client.set(self.keys.group_result(group_id), data, ex=ttl or None)

    def restore_group(self, group_id: str) -> bytes | None:
        return cast("bytes | None", self.client.get(self.keys.group_result(group_id)))

    def close(self) -> None:
        self.client.close()


def _raise_first(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
