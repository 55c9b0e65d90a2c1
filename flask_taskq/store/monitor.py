"""The store's monitor concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

#: A counter's key: ``(kind, queue, task)``, e.g. ``("processed", "default", "app.add")``.
StatKey = tuple[str, str, str]

#: Seconds the per-minute counters are kept.
STATS_TTL = 2 * 3600
#: Seconds a process stays listed after its last heartbeat (its heartbeat document
#: expires much sooner: see :meth:`MonitorStore.beat`).
PROCESS_LIST_TTL = 3600


class MonitorStore(Protocol):
    """Heartbeats and process documents of workers, per-minute task counters and runtime
    histograms, the recent-failures index, paused queues.

    A failure record is a dict ``{"id", "task", "queue", "time", "worker", "body"}``,
    ``body`` being the message (bytes) or None; the store keeps it as given.
    """

    def beat(
        self,
        process: str,
        doc: Mapping[str, Any],
        ttl: float,
        counts: Mapping[StatKey, int],
        failures: Sequence[Mapping[str, Any]],
        max_failures: int,
    ) -> set[str]:
        """In one step: publish ``process``'s heartbeat ``doc`` (a JSON-able dict, gone
        after ``ttl`` seconds unless published again), add ``counts`` to this minute's
        counters (kept :data:`STATS_TTL`), add ``failures`` to the recent failures (the
        newest ``max_failures`` kept), and return the paused queues."""
        ...

    def leave(self, process: str) -> None:
        """Remove ``process``'s heartbeat at once (it is stopping)."""
        ...

    def processes(self) -> list[dict[str, Any]]:
        """The heartbeat documents of the processes alive now, in no particular order."""
        ...

    def stats(self, minutes: Sequence[int]) -> list[dict[StatKey, int]]:
        """The counters of each unix minute (``int(time // 60)``) in ``minutes``, in that
        order; an empty dict for a minute without counters."""
        ...

    def failures(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` (> 0) failure records, newest first."""
        ...

    def failure(self, task_id: str) -> dict[str, Any] | None:
        """The failure record of ``task_id``, or None."""
        ...

    def failure_count(self) -> int:
        """How many failure records are kept."""
        ...

    def take_failure(self, task_id: str) -> dict[str, Any] | None:
        """Remove the failure record of ``task_id`` and return it, atomically: of two
        concurrent callers only one gets it. None if it is not there."""
        ...

    def restore_failure(self, record: Mapping[str, Any]) -> None:
        """Put back a record :meth:`take_failure` returned (what it was taken for
        failed), unless a record of that task id was added meanwhile."""
        ...

    def paused(self) -> set[str]:
        """The paused queues."""
        ...

    def pause(self, queues: Iterable[str]) -> None:
        """Add ``queues`` to the paused queues."""
        ...

    def resume(self, queues: Iterable[str]) -> None:
        """Remove ``queues`` from the paused queues."""
        ...
