"""The memory store: every concern in this process, for ``memory://`` and eager mode."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..beat import BeatStore
    from ..concurrency import ConcurrencyStore
    from ..events import EventStore
    from ..monitor import MonitorStore
    from ..ratelimits import RateLimitStore
    from ..replay import ReplayStore
    from ..revocations import RevocationStore
    from ..workflows import WorkflowStore


class MemoryStore:
    """:class:`~flask_taskq.store.Store` in memory: one per ``memory://`` broker, shared
    by the app and its in-process worker threads."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        # imported here: a worker on Redis imports this class (for isinstance checks)
        # but never builds one
        from .beat import MemoryBeatStore
        from .concurrency import MemoryConcurrencyStore
        from .events import MemoryEventStore
        from .monitor import MemoryMonitorStore
        from .ratelimits import MemoryRateLimitStore
        from .replay import MemoryReplayStore
        from .revocations import MemoryRevocationStore
        from .workflows import MemoryWorkflowStore

        lock = threading.RLock()
        self.monitor: MonitorStore = MemoryMonitorStore(lock)
        self.rate_limits: RateLimitStore = MemoryRateLimitStore(lock)
        self.revocations: RevocationStore = MemoryRevocationStore(lock)
        self.replay: ReplayStore = MemoryReplayStore(lock)
        self.beat: BeatStore = MemoryBeatStore(lock)
        self.workflows: WorkflowStore = MemoryWorkflowStore(lock)
        self.concurrency: ConcurrencyStore = MemoryConcurrencyStore(lock)
        self.events: EventStore = MemoryEventStore()

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        """Nothing to release."""
