"""The concurrency concern of the in-process memory store: the semantics of
``concurrency.lua``, on this process's clock."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..concurrency import KeyState, Parked, Slots


@dataclass
class _Key:
    limit: int = 1
    holders: dict[str, float] = field(default_factory=dict)  # task id -> lease expiry
    waiting: dict[str, float] = field(default_factory=dict)  # task id -> arrival
    waking: dict[str, float] = field(default_factory=dict)  # task id -> claim expiry
    parked: dict[str, Parked] = field(default_factory=dict)


class MemoryConcurrencyStore:
    """:class:`~flask_taskq.store.concurrency.ConcurrencyStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._keys: dict[str, _Key] = {}
        self._noted: dict[str, float] = {}

    def _slots(
        self, key: str, op: str, task_id: str, limit: int | None, lease: float, entry: Parked | None
    ) -> Slots:
        now = time.time()
        with self._lock:
            state = self._keys.setdefault(key, _Key())
            if limit is not None:
                state.limit = limit
            state.holders = {h: t for h, t in state.holders.items() if t > now}
            for w in [w for w, t in state.waking.items() if t <= now]:
                del state.waking[w]
                state.waiting[w] = 0.0
            granted: bool | None = None
            own: float | None = None
            if op == "release":
                state.holders.pop(task_id, None)
            elif op == "acquire":
                granted = task_id in state.holders
                if not granted:
                    own = state.waiting.get(task_id)
            woken: list[Parked] = []
            free = state.limit - len(state.holders)
            if free > 0:
                for w, score in sorted(state.waiting.items(), key=lambda i: (i[1], i[0])):
                    if free <= 0 or w == task_id or (own is not None and score > own):
                        break
                    del state.waiting[w]
                    parked = state.parked.get(w)
                    if parked is not None:
                        state.waking[w] = state.holders[w] = now + lease
                        woken.append(parked)
                        free -= 1
                if granted is False and free > 0:
                    granted = True
            if granted:
                state.holders[task_id] = now + lease
                state.waiting.pop(task_id, None)
                state.waking.pop(task_id, None)
                state.parked.pop(task_id, None)
            elif granted is False and entry is not None:
                state.parked[task_id] = entry
                state.waiting.setdefault(task_id, own if own is not None else now)
            slots = Slots(
                granted, len(state.holders), len(state.waiting) + len(state.waking), woken
            )
            if not state.holders and not state.waiting and not state.waking:
                del self._keys[key]
            return slots

    def acquire(self, key: str, limit: int, lease: float, message: Parked) -> Slots:
        """See :meth:`ConcurrencyStore.acquire`."""
        return self._slots(key, "acquire", message.task_id, limit, lease, message)

    def release(self, key: str, task_id: str, lease: float) -> Slots:
        """See :meth:`ConcurrencyStore.release`."""
        return self._slots(key, "release", task_id, None, lease, None)

    def wake(self, key: str, lease: float) -> Slots:
        """See :meth:`ConcurrencyStore.wake`."""
        return self._slots(key, "wake", "", None, lease, None)

    def renew(self, key: str, task_ids: list[str], lease: float) -> int:
        """See :meth:`ConcurrencyStore.renew`."""
        until = time.time() + lease
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return 0
            held = [t for t in task_ids if t in state.holders]
            for t in held:
                state.holders[t] = until
            return len(held)

    def woken(self, key: str, task_ids: list[str]) -> None:
        """See :meth:`ConcurrencyStore.woken`."""
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return
            for t in task_ids:
                if state.waking.pop(t, None) is not None:
                    state.parked.pop(t, None)

    def note(self, key: str) -> None:
        """See :meth:`ConcurrencyStore.note`."""
        with self._lock:
            self._noted[key] = self._noted.get(key, 0.0) + 1

    def noted(self) -> dict[str, float]:
        """See :meth:`ConcurrencyStore.noted`."""
        with self._lock:
            return dict(self._noted)

    def forget(self, key: str, mark: float) -> None:
        """See :meth:`ConcurrencyStore.forget`."""
        with self._lock:
            if self._noted.get(key) == mark:
                del self._noted[key]

    def state(self, key: str) -> KeyState:
        """See :meth:`ConcurrencyStore.state`."""
        now = time.time()
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return KeyState(key, 0, 0, 0)
            live = sum(1 for t in state.holders.values() if t > now)
            return KeyState(key, state.limit, live, len(state.waiting) + len(state.waking))
