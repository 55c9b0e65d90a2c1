"""The revocations concern of the in-process memory store."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..revocations import Revoked


class MemoryRevocationStore:
    """:class:`~flask_taskq.store.revocations.RevocationStore` in this process's memory:
    each set a list of ``(score, task id)`` in score order."""

    rides_with_fetch = False

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._sets: tuple[list[tuple[float, str]], list[tuple[float, str]]] = ([], [])

    def revoke(self, task_ids: Sequence[str], terminate: bool, ttl: float) -> float:
        """See :meth:`RevocationStore.revoke`."""
        now = time.time()
        with self._lock:
            targets = self._sets if terminate else self._sets[:1]
            top = max((s[-1][0] for s in targets if s), default=0.0)
            score = now if now > top else top + 1e-6
            for entries in targets:
                entries.extend((score, task_id) for task_id in task_ids)
                del entries[: bisect.bisect_left(entries, (score - ttl,))]
            return score

    def since(self, after: tuple[float, float], floor: float) -> Revoked:
        """See :meth:`RevocationStore.since`."""
        with self._lock:
            revoked, terminate = (
                _from(s, max(a, floor)) for s, a in zip(self._sets, after, strict=True)
            )
            return Revoked(revoked, terminate)

    def since_commands(self, after: tuple[float, float], floor: float) -> list[tuple[str, ...]]:
        """Not available: memory reads do not ride along with a fetch."""
        raise NotImplementedError("the memory store is read with since()")

    def since_replies(self, replies: Sequence[Any]) -> Revoked:
        """Not available: memory reads do not ride along with a fetch."""
        raise NotImplementedError("the memory store is read with since()")


def _from(entries: list[tuple[float, str]], low: float) -> list[tuple[str, float]]:
    """``(task id, score)`` of the entries scored at or above ``low``."""
    return [(task_id, score) for score, task_id in entries[bisect.bisect_left(entries, (low,)) :]]
