"""The store's events concern: the stream of task events (``TASKQ_EVENTS``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class EventStore(Protocol):
    """A capped, append-only stream of events, each flat ``field -> text`` pairs,
    identified by increasing ids (Redis stream ids: ``<ms>-<seq>``)."""

    #: True when other processes can read the stream (Redis); False for a stream kept in
    #: this process (memory).
    shared: bool

    def publish(self, events: Sequence[Sequence[str]], maxlen: int) -> None:
        """Append ``events`` (each ``[field, value, field, value, ...]``) in one round
        trip, keeping about the last ``maxlen``."""
        ...

    def last_id(self) -> str:
        """The id of the newest event (``"0-0"`` when there is none)."""
        ...

    def read(self, after: str, count: int, block: float) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` events newer than id ``after``, waiting up to ``block`` seconds
        for the first one; ``[]`` when none came."""
        ...

    def length(self) -> int:
        """How many events the stream holds."""
        ...
