"""The workflows concern of the in-process memory store.

Chord firing claims under the store's lock and leaves the enqueue to the caller
(:attr:`~flask_taskq.store.workflows.Fired.CLAIMED`): the memory transport lives in the
same process, so there is no crash between the two that anything would survive.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ..workflows import Fired, Outgoing

_V = TypeVar("_V")

#: Writes between two sweeps of expired chords and graphs.
SWEEP_EVERY = 256


def _expiry(ttl: int) -> float | None:
    return time.monotonic() + ttl if ttl > 0 else None


class _Expiring(dict[str, tuple[_V, float | None]]):
    """``key -> (value, monotonic expiry or None)``; expired values read as missing."""

    def read(self, key: str) -> _V | None:
        item = self.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= time.monotonic():
            del self[key]
            return None
        return item[0]

    def sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, at) in self.items() if at is not None and at <= now]:
            del self[key]


class MemoryWorkflowStore:
    """:class:`~flask_taskq.store.workflows.WorkflowStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._members: _Expiring[dict[int, bytes]] = _Expiring()
        self._fired: _Expiring[bool] = _Expiring()
        self._graphs: _Expiring[dict[str, Any]] = _Expiring()
        self._owners: _Expiring[str] = _Expiring()
        self._canvases: _Expiring[bytes] = _Expiring()
        self._chains: _Expiring[list[bytes]] = _Expiring()
        self._recent: dict[str, float] = {}  # workflow id -> created
        self._writes = 0

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            for table in (
                self._members,
                self._fired,
                self._graphs,
                self._owners,
                self._canvases,
                self._chains,
            ):
                table.sweep()

    def chord_member_done(
        self, chord_id: str, index: int, value: bytes, size: int, ttl: int
    ) -> list[bytes] | None:
        with self._lock:
            members = self._members.read(chord_id) or {}
            members.setdefault(index, value)
            self._members[chord_id] = (members, _expiry(ttl))
            self._wrote()
            if len(members) < size:
                return None
            return [members[i] for i in range(size)]

    def fire_chord(self, chord_id: str, callback: Outgoing, ttl: int, send: bool = True) -> Fired:
        with self._lock:
            if self._fired.read(chord_id):
                return Fired.BEFORE
            self._fired[chord_id] = (True, _expiry(ttl))
            self._wrote()
            return Fired.CLAIMED

    def save_chain(self, chain_id: str, steps: Sequence[bytes], ttl: int) -> None:
        with self._lock:
            self._chains[chain_id] = (list(steps), _expiry(ttl))
            self._wrote()

    def chain_steps(self, chain_id: str, start: int, stop: int) -> list[bytes]:
        with self._lock:
            steps = self._chains.read(chain_id) or []
            return steps[start:] if stop == -1 else steps[start : stop + 1]

    def save_graph(
        self,
        workflow_id: str,
        doc: dict[str, Any],
        ids: Iterable[str],
        ttl: int,
        keep: int,
        canvas: bytes | None = None,
    ) -> None:
        expires = _expiry(ttl)
        with self._lock:
            self._graphs[workflow_id] = (copy.deepcopy(doc), expires)
            if canvas is not None:
                self._canvases[workflow_id] = (canvas, expires)
            for node_id in ids:
                self._owners[node_id] = (workflow_id, expires)
            self._recent[workflow_id] = doc["created"]
            if len(self._recent) > keep:
                newest = sorted(self._recent.items(), key=lambda kv: kv[1])[-keep:]
                self._recent = dict(newest) if keep > 0 else {}
            self._wrote()

    def graph_id_of(self, any_id: str) -> str | None:
        with self._lock:
            if self._graphs.read(any_id) is not None:
                return any_id
            return self._owners.read(any_id)

    def graph(self, any_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._graphs.read(any_id)
            if doc is None:
                owner = self._owners.read(any_id)
                doc = None if owner is None else self._graphs.read(owner)
            return None if doc is None else copy.deepcopy(doc)

    def recent_graphs(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted(self._recent, key=self._recent.__getitem__, reverse=True)[:limit]
            docs = [self._graphs.read(i) for i in ids]
            return [copy.deepcopy(d) for d in docs if d is not None]

    def graph_canvas(self, workflow_id: str) -> bytes | None:
        with self._lock:
            return self._canvases.read(workflow_id)
