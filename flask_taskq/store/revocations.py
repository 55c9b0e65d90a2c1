"""The store's revocations concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol


class Revoked(NamedTuple):
    """Revocations read from the store: ``(task id, score)`` pairs of each set."""

    #: Tasks never to start.
    revoked: list[tuple[str, float]]
    #: Tasks whose running instance must also be stopped.
    terminate: list[tuple[str, float]]


class RevocationStore(Protocol):
    """Revoked task ids (with terminate flags) and how workers keep an up-to-date copy.

    Each revocation is scored by the store's clock, and a score is never below the newest
    already in its set, so a reader that asks only for scores at or above the newest it has
    seen misses nothing.
    """

    #: True when reads can be raw commands riding along with the broker's fetch on the
    #: same connection (:meth:`since_commands`, :meth:`since_replies`); False when they
    #: are read with :meth:`since` (memory, where a read costs no round trip).
    rides_with_fetch: bool

    def revoke(self, task_ids: Sequence[str], terminate: bool, ttl: float) -> float:
        """Revoke ``task_ids`` (and with ``terminate``, mark them to be stopped when
        running), dropping revocations older than ``ttl`` seconds; return the score given."""
        ...

    def since(self, after: tuple[float, float], floor: float) -> Revoked:
        """Revocations scored at or above ``after`` (one bound per set: revoked,
        terminate) and ``floor``."""
        ...

    def since_commands(self, after: tuple[float, float], floor: float) -> list[tuple[str, ...]]:
        """Raw commands reading what :meth:`since` reads, to ride along with a fetch
        (only when :attr:`rides_with_fetch`)."""
        ...

    def since_replies(self, replies: Sequence[Any]) -> Revoked:
        """What :meth:`since` returns, from the replies to :meth:`since_commands`."""
        ...
