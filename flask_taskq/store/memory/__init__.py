"""The memory store: every concern in this process, for ``memory://`` and eager mode."""

from __future__ import annotations

import threading

from .beat import MemoryBeatStore
from .monitor import MemoryMonitorStore
from .ratelimits import MemoryRateLimitStore
from .replay import MemoryReplayStore
from .revocations import MemoryRevocationStore
from .workflows import MemoryWorkflowStore


class MemoryStore:
    """:class:`~flask_taskq.store.Store` in memory: one per ``memory://`` broker, shared
    by the app and its in-process worker threads."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        lock = threading.RLock()
        self.monitor = MemoryMonitorStore(lock)
        self.rate_limits = MemoryRateLimitStore(lock)
        self.revocations = MemoryRevocationStore(lock)
        self.replay = MemoryReplayStore(lock)
        self.beat = MemoryBeatStore(lock)
        self.workflows = MemoryWorkflowStore(lock)

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        """Nothing to release."""
