"""The Redis store: every concern in the broker's Redis, on the broker's connections."""

from __future__ import annotations

from typing import Any

from ...keys import Keys
from ...redis_common import ERRORS
from ..beat import BeatStore
from ..concurrency import ConcurrencyStore
from ..events import EventStore
from ..monitor import MonitorStore
from ..ratelimits import RateLimitStore
from ..replay import ReplayStore
from ..revocations import RevocationStore
from ..workflows import WorkflowStore
from .beat import RedisBeatStore
from .concurrency import RedisConcurrencyStore
from .events import RedisEventStore
from .monitor import RedisMonitorStore
from .ratelimits import RedisRateLimitStore
from .replay import RedisReplayStore
from .revocations import RedisRevocationStore
from .workflows import RedisWorkflowStore


class RedisStore:
    """:class:`~flask_taskq.store.Store` over one Redis client (shared with the broker,
    so that reads such as revocations can ride along with a fetch)."""

    errors = ERRORS

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.monitor: MonitorStore = RedisMonitorStore(client, keys)
        self.rate_limits: RateLimitStore = RedisRateLimitStore(client, keys)
        self.revocations: RevocationStore = RedisRevocationStore(client, keys)
        self.replay: ReplayStore = RedisReplayStore(client, keys)
        self.beat: BeatStore = RedisBeatStore(client, keys)
        self.workflows: WorkflowStore = RedisWorkflowStore(client, keys)
        self.concurrency: ConcurrencyStore = RedisConcurrencyStore(client, keys)
        self.events: EventStore = RedisEventStore(client, keys)

    def ping(self) -> None:
        """Raise a Redis error when the server cannot be reached."""
        self.client.ping()

    def close(self) -> None:
        """Nothing of its own to release: the connections are the broker's."""
