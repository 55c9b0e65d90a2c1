"""The ratelimits concern of the Redis store.

One token bucket per task, the hash ``taskq:ratelimit:{<task>}`` (``tokens``, ``ts`` in
microseconds of Redis's clock, and ``r:<task id>`` slots booked ahead), taken from by
``rate_limit.lua`` in one script call; runtime overrides are the hash ``taskq:ratelimits``
(task -> rate text).
"""

from __future__ import annotations

from typing import Any

from ...keys import Keys
from ...redis_common import load_script
from ..ratelimits import Bucket


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimitStore:
    """:class:`~flask_taskq.store.ratelimits.RateLimitStore` over Redis (either
    ``decode_responses`` setting)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._script = load_script(client, "rate_limit")

    def acquire(self, task_name: str, rate: float, burst: float, task_id: str | None) -> float:
        """See :meth:`RateLimitStore.acquire`: one script call, on Redis's clock."""
        wait_ms = self._script(
            keys=[self.keys.rate_bucket(task_name)],
            args=[repr(float(rate)), repr(float(burst)), task_id or ""],
        )
        return int(wait_ms) / 1000.0

    def bucket(self, task_name: str) -> Bucket | None:
        """See :meth:`RateLimitStore.bucket`."""
        tokens, ts = self.client.hmget(self.keys.rate_bucket(task_name), "tokens", "ts")
        if tokens is None or ts is None:
            return None
        return Bucket(tokens=float(tokens), updated=int(ts) / 1_000_000)

    def overrides(self) -> dict[str, str]:
        """See :meth:`RateLimitStore.overrides`: one ``HGETALL``."""
        raw = self.client.hgetall(self.keys.rate_limits())
        return {_text(k): _text(v) for k, v in raw.items()}

    def set_override(self, task_name: str, rate_text: str) -> None:
        """See :meth:`RateLimitStore.set_override`."""
        self.client.hset(self.keys.rate_limits(), task_name, rate_text)

    def remove_override(self, task_name: str) -> None:
        """See :meth:`RateLimitStore.remove_override`."""
        self.client.hdel(self.keys.rate_limits(), task_name)
