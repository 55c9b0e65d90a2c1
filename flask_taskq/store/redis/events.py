"""Task events in a Redis stream: ``XADD ... MAXLEN ~`` to write, ``XREAD`` to read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...keys import Keys
from ...redis_common import load_script


class RedisEventStore:
    """The events stream of one key prefix (:meth:`~flask_taskq.keys.Keys.events`)."""

    shared = True

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.key = keys.events()
        self._script: Any = None

    def publish(self, events: Sequence[Sequence[str]], maxlen: int) -> None:
        """Append ``events`` (each ``[field, value, ...]``) with one call of
        ``publish_events.lua``, which XADDs each with ``MAXLEN ~ maxlen`` (trimming
        whole stream nodes, which keeps trimming cheap). One JSON argument for the batch
        costs the client a fraction of what a pipeline of XADDs does to encode."""
        if not events:
            return
        if self._script is None:
            self._script = load_script(self.client, "publish_events")
        blob = json.dumps(events)
        if "\\ud" in blob:  # maybe a lone surrogate, which Redis's cjson refuses
            blob = json.dumps([[_clean(v) for v in event] for event in events])
        self._script(keys=[self.key], args=[maxlen, blob])

    def last_id(self) -> str:
        """The newest event's id, ``"0-0"`` when the stream is empty or absent."""
        rows = self.client.xrevrange(self.key, count=1)
        return _text(rows[0][0]) if rows else "0-0"

    def read(self, after: str, count: int, block: float) -> list[tuple[str, dict[str, str]]]:
        """Events newer than ``after`` (``XREAD BLOCK``)."""
        reply = self.client.xread({self.key: after}, count=count, block=max(1, int(block * 1000)))
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3
            entries = next(iter(reply.values()))
            entries = entries[0] if entries and isinstance(entries[0], list) else entries
        else:
            entries = reply[0][1]
        return [
            (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
            for entry_id, fields in entries
        ]

    def length(self) -> int:
        """``XLEN`` of the stream."""
        return int(self.client.xlen(self.key))


def _clean(value: str) -> str:
    """``value`` with any lone surrogate escaped as text (``\\udc80``)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
