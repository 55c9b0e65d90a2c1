"""The ratelimits concern of the in-process memory store: the same token buckets as
``rate_limit.lua``, on this process's clock."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from ..ratelimits import Bucket


@dataclass
class _State:
    tokens: float
    updated: float  # unix time
    expires: float  # unix time
    slots: dict[str, float] = field(default_factory=dict)  # task id -> booked time


class MemoryRateLimitStore:
    """:class:`~flask_taskq.store.ratelimits.RateLimitStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._buckets: dict[str, _State] = {}
        self._overrides: dict[str, str] = {}

    def acquire(self, task_name: str, rate: float, burst: float, task_id: str | None) -> float:
        """See :meth:`RateLimitStore.acquire`."""
        now = time.time()
        with self._lock:
            state = self._live(task_name, now)
            if state is None:
                state = self._buckets[task_name] = _State(burst, now, now)
            elif now > state.updated:
                state.tokens = min(burst, state.tokens + (now - state.updated) * rate)
            else:
                state.tokens = min(burst, state.tokens)
            wait_ms = 0
            slot = state.slots.get(task_id) if task_id else None
            if slot is not None and task_id:
                if now >= slot:
                    del state.slots[task_id]
                else:
                    wait_ms = math.ceil((slot - now) * 1000)
            elif state.tokens >= 1 - 1e-9:
                state.tokens -= 1
            else:
                wait_ms = math.ceil((1 - state.tokens) * 1000 / rate)
                if task_id:
                    state.tokens -= 1
                    state.slots[task_id] = now + wait_ms / 1000
            state.updated = now
            full_ms = math.ceil((burst - state.tokens) * 1000 / rate)
            state.expires = now + max(1000, full_ms + math.ceil(2000 * burst / rate)) / 1000
            return wait_ms / 1000.0

    def _live(self, task_name: str, now: float) -> _State | None:
        state = self._buckets.get(task_name)
        if state is not None and now >= state.expires:
            del self._buckets[task_name]
            return None
        return state

    def bucket(self, task_name: str) -> Bucket | None:
        """See :meth:`RateLimitStore.bucket`."""
        with self._lock:
            state = self._live(task_name, time.time())
            return None if state is None else Bucket(tokens=state.tokens, updated=state.updated)

    def overrides(self) -> dict[str, str]:
        """See :meth:`RateLimitStore.overrides`."""
        with self._lock:
            return dict(self._overrides)

    def set_override(self, task_name: str, rate_text: str) -> None:
        """See :meth:`RateLimitStore.set_override`."""
        with self._lock:
            self._overrides[task_name] = rate_text

    def remove_override(self, task_name: str) -> None:
        """See :meth:`RateLimitStore.remove_override`."""
        with self._lock:
            self._overrides.pop(task_name, None)
