"""The replay concern of the in-process memory store."""

from __future__ import annotations

import threading


class MemoryReplayStore:
    """:class:`~flask_taskq.store.replay.ReplayStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
