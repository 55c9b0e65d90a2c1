"""Results in Redis: one string per task. A caller of ``get()`` adds a token to the task's
waiting list before it blocks on its done list; the worker that writes the final state
moves a token from the one to the other (``LMOVE``), only after one ``EXISTS`` over the
batch found someone waiting, so a result nobody waits for leaves one key and costs one
``SET``."""

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
    is_cluster,
    load_script,
    send_commands,
)
from ..serializer import Serializer, get_serializer
from ..states import READY_STATES

#: Seconds a waiting list outlives the block it announces (a waiter adds to it again before
#: each block, so it lapses only once nobody waits).
WAITING_SLACK = 5


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
        self._store = load_script(self.client, "store_results")
        self._cluster = is_cluster(self.client)
        self._mark = load_script(self.client, "wait_mark")
        self._direct = DirectCommands(self.client)

    def store_many(self, items: Sequence[tuple[str, bytes, int]], ttl: int) -> None:
        """One ``store_results.lua`` call for the whole batch (one per task on a Redis
        Cluster, whose scripts touch one slot), sent by ``EVALSHA`` and loaded only when
        Redis answers ``NOSCRIPT``. One command and one reply for the batch: packing and
        reading a command per result cost the worker about three times as much."""
        if not items:
            return
        sha, result = self._store.sha, self.keys.result
        commands: list[tuple[object, ...]]
        if self._cluster:
            commands = [
                ("EVALSHA", sha, 1, result(task_id), ttl, data, int(kind))
                for task_id, data, kind in items
            ]
        else:
            names: list[str] = []
            args: list[object] = [ttl]
            for task_id, data, kind in items:
                names.append(result(task_id))
                args += (data, int(kind))
            commands = [("EVALSHA", sha, len(names), *names, *args)]
        replies = self._send(commands)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            self.client.script_load(self._store.script)
            replies = self._send(commands)
        _raise_first(replies)

    def _send(self, commands: Sequence[tuple[object, ...]]) -> list[Any]:
        direct = self._direct
        return send_commands(
            self.client, direct, commands, use_direct=direct.enabled or direct.cluster
        )

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
        # A token goes on the waiting list before the result is read (a script, or RPUSH
        # then GET in one round trip). The worker writes the final state, then moves a
        # token onto the done list: if the read missed the state, the token was there
        # by then, so the done list is pushed (BLMOVE of it onto itself blocks until
        # then and leaves the element, so every waiter wakes); if not, the read returns
        # it. No polling, no lost wake-up. A result already final adds no token.
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.keys.done(task_id)
        result = self.keys.result(task_id)
        waiting = self.keys.waiting(task_id)
        backoff = 0.05
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                # A reply is not waited for longer than the time left, plus a little to
                # let an answer that is on its way arrive.
                block = MAX_BLOCK if left is None else min(MAX_BLOCK, left)
                bound = SOCKET_TIMEOUT if left is None else max(left, 0) + 0.25
                life = int(block) + WAITING_SLACK
                data = self._mark_and_read(result, waiting, life, bound)
                meta = self._final(data)
                if meta is not None:
                    return meta
                if data is not None:  # running, retrying, or a state it reported
                    replies = self._direct.pipeline(
                        [("RPUSH", waiting, b"1"), ("EXPIRE", waiting, life), ("GET", result)],
                        timeout=bound,
                    )
                    _raise_first(replies)
                    meta = self._final(replies[2])
                    if meta is not None:
                        return meta
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

    def _final(self, data: bytes | None) -> dict[str, Any] | None:
        """The document ``data`` if it is a final (ready) state, else None."""
        meta: dict[str, Any] | None = None if data is None else self.serializer.loads(data)
        return meta if meta is not None and meta.get("status") in READY_STATES else None

    def _mark_and_read(self, result: str, waiting: str, life: int, bound: float) -> Any:
        """``wait_mark.lua``: the result document, a token added to the waiting list
        first if there is none yet (one round trip)."""
        command = ("EVALSHA", self._mark.sha, 2, result, waiting, life)
        try:
            return self._direct.command(*command, timeout=bound)
        except redis.exceptions.NoScriptError:
            self.client.script_load(self._mark.script)
            return self._direct.command(*command, timeout=bound)

    def forget(self, task_id: str) -> None:
        keys = self.keys
        self.client.delete(keys.result(task_id), keys.done(task_id), keys.waiting(task_id))

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
