"""The revocations concern of the Redis store.

Two sorted sets scored by revocation time: ``taskq:revoked`` (never start these) and
``taskq:revoked:terminate`` (also stop a running instance). The time is Redis's, taken in
``revoke.lua``, and a score never goes below the newest already in its set. Reads are
``ZRANGEBYSCORE`` commands that can ride along with the broker's fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from ...keys import Keys
from ...redis_common import load_script
from ..revocations import Revoked


class RedisRevocationStore:
    """:class:`~flask_taskq.store.revocations.RevocationStore` over Redis."""

    rides_with_fetch = True

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._script: Any = None

    def revoke(self, task_ids: Sequence[str], terminate: bool, ttl: float) -> float:
        """See :meth:`RevocationStore.revoke`: one round trip, scored by Redis's clock."""
        if not task_ids:
            return 0.0
        if self._script is None:
            self._script = load_script(self.client, "revoke")
        keys = [self.keys.revoked()] + ([self.keys.terminate()] if terminate else [])
        commands = [
            ("EVALSHA", self._script.sha, 1, key, repr(float(ttl)), *task_ids) for key in keys
        ]
        replies = self._send(commands)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            self.client.script_load(self._script.script)
            replies = self._send(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return float(replies[0])

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip; errors come back as replies."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    def since(self, after: tuple[float, float], floor: float) -> Revoked:
        """See :meth:`RevocationStore.since`: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for command in self.since_commands(after, floor):
            pipe.execute_command(*command)
        return self.since_replies(pipe.execute())

    def since_commands(self, after: tuple[float, float], floor: float) -> list[tuple[str, ...]]:
        """See :meth:`RevocationStore.since_commands`."""
        return [
            ("ZRANGEBYSCORE", key, repr(max(seen, floor)), "+inf", "WITHSCORES")
            for key, seen in zip((self.keys.revoked(), self.keys.terminate()), after, strict=True)
        ]

    def since_replies(self, replies: Sequence[Any]) -> Revoked:
        """See :meth:`RevocationStore.since_replies`."""
        revoked, terminate = (_pairs(reply) for reply in replies)
        return Revoked(revoked, terminate)


def _pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """A ZRANGEBYSCORE ... WITHSCORES reply as ``(member, score)`` pairs, whether it came
    flat (``[member, score, ...]``, raw) or already paired (redis-py's callback)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(_text(member), float(score)) for member, score in reply]
    return [(_text(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
