"""The store interface: shared state that is not a message and not a task result.

A feature that needs state shared between processes (rate-limit buckets, chord counters,
revocations, heartbeats, the beat lease, ...) asks the store for it by meaning, through
the concern it belongs to (``store.rate_limits.acquire(...)``), never for a client. The
Redis store keeps everything in the broker's Redis; the memory store keeps it in this
process, for ``memory://`` and eager mode. A store that cannot do something raises
:class:`~flask_taskq.exceptions.ConfigurationError` with a one-line reason when the
feature is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # a worker loads the concerns it uses, not all of them
    from .beat import BeatStore
    from .concurrency import ConcurrencyStore
    from .events import EventStore
    from .monitor import MonitorStore
    from .ratelimits import RateLimitStore
    from .replay import ReplayStore
    from .revocations import RevocationStore
    from .workflows import WorkflowStore


class Store(Protocol):
    """Shared state, one attribute per concern."""

    #: Exceptions meaning the store cannot be reached or refuses for now: callers back
    #: off and retry (a worker never dies of them).
    errors: tuple[type[BaseException], ...]

    monitor: MonitorStore
    rate_limits: RateLimitStore
    revocations: RevocationStore
    replay: ReplayStore
    concurrency: ConcurrencyStore

    # Properties, so that a store may build these on first use.
    @property
    def beat(self) -> BeatStore:
        """The beat's leader lease and run-time periodic entries."""

    @property
    def workflows(self) -> WorkflowStore:
        """Chains, chords and workflow graphs."""

    @property
    def events(self) -> EventStore:
        """The task events stream."""

    def ping(self) -> None:
        """Raise one of :attr:`errors` when the store cannot be reached."""

    def close(self) -> None:
        """Release connections."""
