"""The beat concern of the in-process memory store."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from ..beat import Claim, EntryState, Lease, LeaseStatus

#: Seconds between sweeps of expired per-fire keys.
SWEEP_EVERY = 60.0


class MemoryBeatStore:
    """:class:`~flask_taskq.store.beat.BeatStore` in this process's memory (for beats
    running in the app's process); times to live follow ``time.monotonic``."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._lease: tuple[str, float] | None = None  # (token, monotonic expiry)
        self._entries: dict[str, EntryState] = {}
        self._fired: dict[tuple[str, float], float] = {}  # (name, due) -> monotonic expiry
        self._swept = time.monotonic()
        self._dynamic: dict[str, str] = {}
        self._version = 0

    def _holder(self) -> str | None:
        if self._lease is not None and self._lease[1] <= time.monotonic():
            self._lease = None
        return None if self._lease is None else self._lease[0]

    def hold_lease(self, token: str, seconds: float) -> Lease:
        with self._lock:
            holder = self._holder()
            if holder is not None and holder != token:
                assert self._lease is not None
                return Lease(LeaseStatus.HELD, max(self._lease[1] - time.monotonic(), 0.0))
            self._lease = (token, time.monotonic() + seconds)
            return Lease(LeaseStatus.RENEWED if holder == token else LeaseStatus.TAKEN, seconds)

    def release_lease(self, token: str) -> bool:
        with self._lock:
            if self._holder() != token:
                return False
            self._lease = None
            return True

    def leader(self) -> tuple[str | None, float | None]:
        with self._lock:
            holder = self._holder()
            if holder is None or self._lease is None:
                return None, None
            return holder, max(self._lease[1] - time.monotonic(), 0.0)

    def sync_entries(
        self, token: str, now: float, entries: Sequence[tuple[str, str, str]]
    ) -> list[str] | None:
        with self._lock:
            if self._holder() != token:
                return None
            names = {name for name, _, _ in entries}
            removed = sorted(set(self._entries) - names)
            for name in removed:
                del self._entries[name]
            for name, schedule, _task in entries:
                state = self._entries.get(name)
                if state is None or state.since is None or state.schedule != schedule:
                    base = state or EntryState()
                    self._entries[name] = replace(base, since=now, schedule=schedule)
            return removed

    def entries(self, names: Sequence[str]) -> list[EntryState]:
        with self._lock:
            return [self._entries.get(name) or EntryState() for name in names]

    def claim(
        self,
        token: str,
        name: str,
        due: float,
        now: float,
        fire: bool,
        fired_ttl: int,
        task_id: str | None = None,
    ) -> Claim:
        with self._lock:
            if self._holder() != token:
                return Claim.NOT_LEADER
            state = self._entries.get(name)
            if state is None:
                return Claim.UNKNOWN
            if state.last is not None and state.last >= due:
                return Claim.BEFORE
            clock = time.monotonic()
            if clock - self._swept > SWEEP_EVERY:
                self._fired = {k: v for k, v in self._fired.items() if v > clock}
                self._swept = clock
            if fire and self._fired.get((name, due), 0.0) <= clock:
                self._fired[(name, due)] = clock + fired_ttl
                run_id = task_id or state.run_id
                self._entries[name] = replace(state, last=due, run_at=now, run_id=run_id)
                return Claim.DONE
            self._entries[name] = replace(state, last=due)
            return Claim.BEFORE if fire else Claim.DONE

    def note_run(self, name: str, now: float, task_id: str) -> bool:
        with self._lock:
            state = self._entries.get(name) or EntryState()
            self._entries[name] = replace(state, run_at=now, run_id=task_id)
            return True

    def dynamic_version(self) -> int:
        with self._lock:
            return self._version

    def dynamic_entries(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self._version, dict(self._dynamic)

    def change_dynamic(self, mode: str, name: str, spec: str = "") -> bool:
        with self._lock:
            exists = name in self._dynamic
            if exists == (mode == "add"):
                return False
            if mode == "remove":
                del self._dynamic[name]
            else:
                self._dynamic[name] = spec
            self._version += 1
            return True
