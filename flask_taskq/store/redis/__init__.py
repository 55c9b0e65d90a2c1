"""The Redis store: every concern in the broker's Redis, on the broker's connections."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from ...keys import Keys
from ...redis_common import ERRORS
from .concurrency import RedisConcurrencyStore
from .monitor import RedisMonitorStore
from .ratelimits import RedisRateLimitStore
from .replay import RedisReplayStore
from .revocations import RedisRevocationStore

if TYPE_CHECKING:
    from ..beat import BeatStore
    from ..concurrency import ConcurrencyStore
    from ..events import EventStore
    from ..monitor import MonitorStore
    from ..ratelimits import RateLimitStore
    from ..replay import ReplayStore
    from ..revocations import RevocationStore
    from ..workflows import WorkflowStore


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
        self.concurrency: ConcurrencyStore = RedisConcurrencyStore(client, keys)

    # Built on first use, so that a worker that runs no beat, no workflow and publishes
    # no events does not load their code.
    @cached_property
    def beat(self) -> BeatStore:
        """The beat's leader lease and run-time periodic entries."""
        from .beat import RedisBeatStore

        return RedisBeatStore(self.client, self.keys)

    @cached_property
    def workflows(self) -> WorkflowStore:
        """Chains, chords and workflow graphs."""
        from .workflows import RedisWorkflowStore

        return RedisWorkflowStore(self.client, self.keys)

    @cached_property
    def events(self) -> EventStore:
        """The task events stream."""
        from .events import RedisEventStore

        return RedisEventStore(self.client, self.keys)

    def ping(self) -> None:
        """Raise a Redis error when the server cannot be reached."""
        self.client.ping()

    def close(self) -> None:
        """Nothing of its own to release: the connections are the broker's."""
