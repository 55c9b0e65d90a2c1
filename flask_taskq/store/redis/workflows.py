"""The workflows concern of the Redis store.

A chord fires in ``chord_fire.lua``, which claims the fired marker and adds the
callback to its queue's stream (or delayed set) in one step: the store and the Redis
transport share the server, so a worker that dies at any point neither loses the
callback nor sends it twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ...keys import DEFAULT_PRIORITY, Keys
from ...redis_common import load_script, mget
from ..workflows import Fired, Outgoing


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWorkflowStore:
    """:class:`~flask_taskq.store.workflows.WorkflowStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._member = load_script(client, "chord_member")
        self._fire = load_script(client, "chord_fire")

    def chord_member_done(
        self, chord_id: str, index: int, value: bytes, size: int, ttl: int
    ) -> list[bytes] | None:
        reply = self._member(
            keys=[self.keys.chord_results(chord_id)], args=[index, value, size, ttl]
        )
        if isinstance(reply, int):
            return None
        stored = dict(zip(reply[::2], reply[1::2], strict=True))
        return [stored[str(i).encode()] for i in range(size)]

    def fire_chord(self, chord_id: str, callback: Outgoing, ttl: int, send: bool = True) -> Fired:
        fired = self._fire(
            keys=[
                self.keys.chord_fired(callback.queue, chord_id),
                self.keys.stream(callback.queue, callback.priority),
                self.keys.delayed(callback.queue),
                self.keys.stream(callback.queue, DEFAULT_PRIORITY),
            ],
            args=[
                callback.body if send else b"",
                callback.eta or 0,
                time.time(),
                callback.priority,
                ttl,
            ],
        )
        if not fired:
            return Fired.BEFORE
        return Fired.SENT if send else Fired.CLAIMED

    def save_chain(self, chain_id: str, steps: Sequence[bytes], ttl: int) -> None:
        key = self.keys.chain_steps(chain_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(key)
        pipe.rpush(key, *steps)
        if ttl > 0:
            pipe.expire(key, ttl)
        pipe.execute()

    def chain_steps(self, chain_id: str, start: int, stop: int) -> list[bytes]:
        return list(self.client.lrange(self.keys.chain_steps(chain_id), start, stop))

    def save_graph(
        self,
        workflow_id: str,
        doc: dict[str, Any],
        ids: Iterable[str],
        ttl: int,
        keep: int,
        canvas: bytes | None = None,
    ) -> None:
        expiry = ttl or None
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.workflow(workflow_id), json.dumps(doc, separators=(",", ":")), ex=expiry)
        if canvas is not None:
            pipe.set(self.keys.workflow_canvas(workflow_id), canvas, ex=expiry)
        for node_id in ids:
            pipe.set(self.keys.workflow_of(node_id), workflow_id, ex=expiry)
        pipe.zadd(self.keys.workflows(), {workflow_id: doc["created"]})
        pipe.zremrangebyrank(self.keys.workflows(), 0, -keep - 1)
        pipe.execute()

    def graph_id_of(self, any_id: str) -> str | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.keys.workflow(any_id))
        pipe.get(self.keys.workflow_of(any_id))
        exists, owner = pipe.execute()
        if exists:
            return any_id
        return None if owner is None else _text(owner)

    def graph(self, any_id: str) -> dict[str, Any] | None:
        data = self.client.get(self.keys.workflow(any_id))
        if data is None:
            owner = self.client.get(self.keys.workflow_of(any_id))
            if owner is None:
                return None
            data = self.client.get(self.keys.workflow(_text(owner)))
            if data is None:
                return None
        doc: dict[str, Any] = json.loads(data)
        return doc

    def recent_graphs(self, limit: int) -> list[dict[str, Any]]:
        ids = [_text(i) for i in self.client.zrevrange(self.keys.workflows(), 0, limit - 1)]
        if not ids:
            return []
        found = mget(self.client, [self.keys.workflow(i) for i in ids])
        return [json.loads(d) for d in found if d is not None]

    def graph_canvas(self, workflow_id: str) -> bytes | None:
        data = self.client.get(self.keys.workflow_canvas(workflow_id))
        if data is None:
            return None
        return data if isinstance(data, bytes) else str(data).encode()
