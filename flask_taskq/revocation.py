"""Revoked task ids, kept in Redis so that every worker, also one started later, honours
them until they expire.

Two sorted sets scored by revocation time: ``taskq:revoked`` (never start these) and
``taskq:revoked:terminate`` (also stop a running instance). The time is Redis's, taken in
``revoke.lua``, and a score never goes below the newest already in its set: workers read
only scores at or above the newest they have seen, so a sender's clock (or a Redis clock
that steps back) can never hide a revocation from them. Workers copy new entries into
memory with every fetch (the reads ride in the fetch's round trip: see
:meth:`Revocations.sync_commands`) and each second, and check that copy before running
each task, so the check costs no round trip per task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

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
        self._script: Any = None

    def revoke(self, task_ids: Iterable[str], terminate: bool = False) -> None:
        """Revoke tasks for every worker (kept for the revocation TTL), scored by Redis's
        clock: one round trip, whatever this process's clock says."""
        ids = list(dict.fromkeys(task_ids))
        if self.client is None:  # memory://
            now = time.time()
            with self._lock:
                self._revoked.update(dict.fromkeys(ids, now))
                if terminate:
                    self._terminate.update(dict.fromkeys(ids, now))
            return
        if not ids:
            return
        if self._script is None:
            from .redis_common import load_script

            self._script = load_script(self.client, "revoke")
        keys = [self.keys.revoked()] + ([self.keys.terminate()] if terminate else [])
        commands = [
            ("EVALSHA", self._script.sha, 1, key, repr(float(self.ttl)), *ids) for key in keys
        ]
        replies = self._send(commands)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            self.client.script_load(self._script.script)
            replies = self._send(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip; errors come back as replies."""
        pipe = self.client.pipeline(transaction=False)  # type: ignore[union-attr]
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    def sync(self, force: bool = False) -> None:
        """Copy revocations made since the last sync (no-op if synced very recently)."""
        now = time.monotonic()
        if self.client is None or (not force and now - self._synced < SYNC_INTERVAL):
            return
        pipe = self.client.pipeline(transaction=False)
        for command in self.sync_commands():
            pipe.execute_command(*command)
        self.apply_sync(pipe.execute())

    def sync_commands(self) -> list[tuple[str, ...]]:
        """The commands that read revocations made since the last sync; a caller may send
        them in a round trip it makes anyway and hand the replies to :meth:`apply_sync`."""
        floor = time.time() - self.ttl
        return [
            ("ZRANGEBYSCORE", key, repr(max(seen, floor)), "+inf", "WITHSCORES")
            for key, seen in zip(
                (self.keys.revoked(), self.keys.terminate()), self._seen, strict=True
            )
        ]

    def apply_sync(self, replies: list[list[Any]]) -> None:
        """Take in the raw replies to :meth:`sync_commands` (sent in this order)."""
        self._synced = time.monotonic()
        floor = time.time() - self.ttl
        new_revoked, new_terminate = (_pairs(reply) for reply in replies)
        with self._lock:
            for target, rows in ((self._revoked, new_revoked), (self._terminate, new_terminate)):
                for task_id, score in rows:
                    target[task_id.decode()] = score
            self._seen = (
                max([s for _, s in new_revoked], default=self._seen[0]),
                max([s for _, s in new_terminate], default=self._seen[1]),
            )
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


def _pairs(reply: list[Any]) -> list[tuple[bytes, float]]:
    """A ZRANGEBYSCORE ... WITHSCORES reply as ``(member, score)`` pairs, whether it came
    flat (``[member, score, ...]``, raw) or already paired (redis-py's callback)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(member, float(score)) for member, score in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]
