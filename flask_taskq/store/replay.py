"""The store's replay concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Start(NamedTuple):
    """Where an attempt of a task started: its message's delivery."""

    task_id: str
    #: The message's retry count.
    attempt: int
    queue: str
    priority: int
    entry_id: str


class ReplayStore(Protocol):
    """Where each signed task's attempt started, so a replayed message is refused."""

    def start(self, start: Start, ttl: int, first_delivery: bool) -> str | None:
        """Record ``start`` (kept ``ttl`` seconds) and return None when it may run: no
        attempt recorded yet, an earlier one, or the same attempt from the same delivery
        (run again after a crash). Otherwise return why it is a replay (a later or the
        same attempt started elsewhere; or, on a ``first_delivery``, the task already has
        a final result, where the store can see results) and record nothing."""
        ...

    def forget_starts(self, starts: Sequence[Start]) -> None:
        """Forget each recorded start that is exactly one of ``starts`` (one round trip)."""
        ...

    def forget(self, task_ids: Sequence[str]) -> None:
        """Forget every recorded start of ``task_ids``."""
        ...
