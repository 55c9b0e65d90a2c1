"""Revoked task ids, kept in Redis so that every worker, also one started later, honours
them until they expire.

Two sorted sets scored by revocation time: ``taskq:revoked`` (never start these) and
``taskq:revoked:terminate`` (also stop a running instance). Workers copy new entries into
memory at most every ``SYNC_INTERVAL`` seconds before fetching, and check that copy before
running each task, so the check costs no round trip per task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import redis

from .keys import Keys

#: Longest a worker's copy of the revocations may be out of date before a fetch (s).
SYNC_INTERVAL = 0.1


class Revocations:
    """Revocations in Redis plus this process's copy of them."""

    def __init__(self, client: redis.Redis | None, keys: Keys, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl or 86400
        self._revoked: dict[str, float] = {}
        self._terminate: dict[str, float] = {}
        self._seen = (0.0, 0.0)  # newest score read from each set
        self._synced = 0.0
        self._lock = threading.Lock()

    def revoke(self, task_ids: Iterable[str], terminate: bool = False) -> None:
        """Revoke tasks for every worker (kept for the revocation TTL)."""
        now = time.time()
        ids = dict.fromkeys(task_ids, now)
        if self.client is None:  # memory://
            with self._lock:
                self._revoked.update(ids)
                if terminate:
                    self._terminate.update(ids)
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.revoked(), ids)
        pipe.zremrangebyscore(self.keys.revoked(), "-inf", now - self.ttl)
        if terminate:
            pipe.zadd(self.keys.terminate(), ids)
            pipe.zremrangebyscore(self.keys.terminate(), "-inf", now - self.ttl)
        pipe.execute()

    def sync(self, force: bool = False) -> None:
        """Copy revocations made since the last sync (no-op if synced very recently)."""
        now = time.monotonic()
        if self.client is None or (not force and now - self._synced < SYNC_INTERVAL):
            return
        self._synced = now
        floor = time.time() - self.ttl
        pipe = self.client.pipeline(transaction=False)
        for key, seen in zip((self.keys.revoked(), self.keys.terminate()), self._seen,
                             strict=True):
            pipe.zrangebyscore(key, max(seen, floor), "+inf", withscores=True)
        new_revoked, new_terminate = pipe.execute()
        with self._lock:
            for target, rows in ((self._revoked, new_revoked),
                                 (self._terminate, new_terminate)):
                for task_id, score in rows:
                    target[task_id.decode()] = score
            self._seen = (max([s for _, s in new_revoked], default=self._seen[0]),
                          max([s for _, s in new_terminate], default=self._seen[1]))
            if len(self._revoked) > 10_000:  # pruned in place: workers hold ``ids``
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
