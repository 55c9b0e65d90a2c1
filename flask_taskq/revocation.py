"""Revoked task ids, kept in the store so that every worker, also one started later,
honours them until they expire.

The store keeps two sets scored by revocation time (never start these; also stop a
running instance), by its own clock, a score never going below the newest already in its
set: workers read only scores at or above the newest they have seen, so a sender's clock
(or a store clock that steps back) can never hide a revocation from them. Workers copy
new entries into memory with every fetch and each second, and check that copy before
running each task, so the check costs no round trip per task. On Redis the reads ride in
the fetch's round trip (:attr:`Revocations.piggyback`); the memory store is read directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .store.revocations import RevocationStore, Revoked

#: Longest a worker's copy of the revocations may be out of date before a fetch (s).
SYNC_INTERVAL = 0.1
#: Size of the copy above which expired revocations are pruned from it.
PRUNE_ABOVE = 10_000


class Revocations:
    """Revocations in the store plus this process's copy of them."""

    def __init__(self, store: RevocationStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl or 86400
        self._revoked: dict[str, float] = {}
        self._terminate: dict[str, float] = {}
        self._seen = (0.0, 0.0)  # newest score read from each set
        self._synced = 0.0
        self._lock = threading.Lock()

    def revoke(self, task_ids: Iterable[str], terminate: bool = False) -> None:
        """Revoke tasks for every worker (kept for the revocation TTL), scored by the
        store's clock: one round trip, whatever this process's clock says. A store read
        without a round trip (memory) is shared with this process's workers: this copy
        takes the revocation at once."""
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return
        score = self.store.revoke(ids, terminate, self.ttl)
        if not self.store.rides_with_fetch:
            rows = [(task_id, score) for task_id in ids]
            self._take(Revoked(rows, rows if terminate else []), advance=False)

    def sync(self, force: bool = False) -> None:
        """Copy revocations made since the last sync (no-op if synced very recently)."""
        if not force and time.monotonic() - self._synced < SYNC_INTERVAL:
            return
        self._synced = time.monotonic()
        self._take(self.store.since(self._seen, time.time() - self.ttl))

    @property
    def piggyback(self) -> Revocations | None:
        """This object as the broker's fetch :class:`~flask_taskq.broker.base.Piggyback`
        when the store's reads can ride along with it (Redis), else None: then call
        :meth:`sync` before fetching."""
        return self if self.store.rides_with_fetch else None

    def sync_commands(self) -> list[tuple[str, ...]]:
        """The commands that read revocations made since the last sync; a caller may send
        them in a round trip it makes anyway and hand the replies to :meth:`apply_sync`."""
        return self.store.since_commands(self._seen, time.time() - self.ttl)

    def apply_sync(self, replies: Sequence[Any]) -> None:
        """Take in the raw replies to :meth:`sync_commands` (sent in this order)."""
        self._synced = time.monotonic()
        self._take(self.store.since_replies(replies))

    def _take(self, new: Revoked, advance: bool = True) -> None:
        floor = time.time() - self.ttl
        with self._lock:
            for target, rows in ((self._revoked, new.revoked), (self._terminate, new.terminate)):
                for task_id, score in rows:
                    target[task_id] = score
            if advance:
                self._seen = (
                    max([s for _, s in new.revoked], default=self._seen[0]),
                    max([s for _, s in new.terminate], default=self._seen[1]),
                )
            if len(self._revoked) > PRUNE_ABOVE:  # pruned in place: workers hold ``ids``
                for target in (self._revoked, self._terminate):
                    for k in [k for k, v in target.items() if v < floor]:
                        del target[k]

    @property
    def ids(self) -> dict[str, float]:
        """Revoked task ids (this process's copy, kept up to date in place): a plain dict,
        so checking ``id in ids`` costs no Python call."""
        return self._revoked

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._revoked

    def terminating(self, task_id: str) -> bool:
        """True if a running instance of ``task_id`` must be stopped."""
        return task_id in self._terminate
