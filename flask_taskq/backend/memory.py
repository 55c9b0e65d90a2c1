"""Results kept in this process (``memory://``), for development and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from .. import states
from ..serializer import Serializer, get_serializer
from ..states import READY_STATES
from .base import STARTED

#: The states a STARTED write may replace.
_BEFORE_START = frozenset({states.STARTED, states.RETRY})


class MemoryBackend:
    """In-process result backend. Results vanish with the process."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, serializer: Serializer | None = None, **_: object) -> None:
        self.serializer = serializer or get_serializer("json")
        self._results: dict[str, tuple[bytes, float | None]] = {}
        self._groups: dict[str, tuple[bytes, float | None]] = {}
        self._changed = threading.Condition()

    def store_many(self, items: Sequence[tuple[str, bytes, int]], ttl: int) -> None:
        expires = time.monotonic() + ttl if ttl > 0 else None
        with self._changed:
            for task_id, data, kind in items:
                if kind == STARTED:
                    old = self.get(task_id)
                    if old is not None and old.get("status") not in _BEFORE_START:
                        continue
                self._results[task_id] = (data, expires)
            self._changed.notify_all()

    def get(self, task_id: str) -> dict[str, Any] | None:
        entry = self._results.get(task_id)
        if entry is None:
            return None
        data, expires = entry
        if expires is not None and expires < time.monotonic():
            self._results.pop(task_id, None)
            return None
        meta: dict[str, Any] = self.serializer.loads(data)
        return meta

    def get_many(self, task_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        return [self.get(task_id) for task_id in task_ids]

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        def ready() -> bool:
            meta = self.get(task_id)
            return meta is not None and meta.get("status") in READY_STATES

        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                return None
        return self.get(task_id)

    def forget(self, task_id: str) -> None:
        self._results.pop(task_id, None)

    def save_group(self, group_id: str, data: bytes, ttl: int) -> None:
        with self._changed:
            self._groups[group_id] = (data, time.monotonic() + ttl if ttl > 0 else None)

    def restore_group(self, group_id: str) -> bytes | None:
        with self._changed:
            data, expires = self._groups.get(group_id, (None, None))
            if expires is not None and expires < time.monotonic():
                del self._groups[group_id]
                return None
            return data

    def close(self) -> None:
        pass
