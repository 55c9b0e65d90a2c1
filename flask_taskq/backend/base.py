"""The result backend interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

#: What the third item of a :meth:`ResultBackend.store_many` triple says about the state
#: stored (``False``/``True`` are the first two).
NOT_READY = 0
#: A final state (SUCCESS, FAILURE, REVOKED): it wakes waiters.
READY = 1
#: STARTED: stored only where no document exists or the one there is STARTED or RETRY, so
#: that a late STARTED never replaces a final result or a state the task reported.
STARTED = 2


class ResultBackend(Protocol):
    """Stores each task's state document (a dict with at least ``status``).

    ``ttl`` is the result's time to live in seconds (``0`` keeps it forever).
    """

    #: Exceptions meaning the backend is unreachable or refuses for now.
    errors: tuple[type[BaseException], ...]

    def store_many(self, items: Sequence[tuple[str, bytes, int]], ttl: int) -> None:
        """Store ``(task_id, encoded meta, kind)`` triples in one round trip, in order;
        ``kind`` is :data:`NOT_READY`, :data:`READY` (or a bool: ready or not) or
        :data:`STARTED`."""

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The task's state document, or ``None`` if nothing is known (PENDING)."""

    def get_many(self, task_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The state documents of ``task_ids`` (None where unknown), in one round trip."""

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        """Block until the task is in a ready state; ``None`` on timeout."""

    def forget(self, task_id: str) -> None:
        """Delete what is stored about the task."""

    def save_group(self, group_id: str, data: bytes, ttl: int) -> None:
        """Keep a saved group's encoded member ids for ``ttl`` seconds (``0``: forever)."""

    def restore_group(self, group_id: str) -> bytes | None:
        """What :meth:`save_group` kept for ``group_id``, or None (never saved, expired)."""

    def close(self) -> None:
        """Release connections."""
