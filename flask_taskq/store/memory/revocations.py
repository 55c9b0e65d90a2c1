"""The revocations concern of the in-process memory store."""

from __future__ import annotations

import threading


class MemoryRevocationStore:
    """:class:`~flask_taskq.store.revocations.RevocationStore` in this process's memory."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
