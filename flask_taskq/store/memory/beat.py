"""The beat concern of the in-process memory store."""

from __future__ import annotations

import threading


class MemoryBeatStore:
    """:class:`~flask_taskq.store.beat.BeatStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
