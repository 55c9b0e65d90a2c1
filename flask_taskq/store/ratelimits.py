"""The store's ratelimits concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol, TypedDict


class Bucket(TypedDict):
    """A token bucket as the store holds it now."""

    #: Tokens left when last touched (negative: booked ahead, see :meth:`~RateLimitStore.
    #: acquire`); the bucket has refilled since.
    tokens: float
    #: When it was last touched (unix time, by the store's clock).
    updated: float


class RateLimitStore(Protocol):
    """Token buckets per task name and the rate overrides set at run time."""

    def acquire(self, task_name: str, rate: float, burst: float, task_id: str | None) -> float:
        """Take a token from ``task_name``'s bucket (``burst`` tokens at most, refilled at
        ``rate`` per second, by one clock shared by every worker); return 0.0 when taken,
        else the seconds until one may be had.

        With ``task_id``, a refusal books the next free token for that id (the bucket goes
        into debt) and the wait is until it; the same id asking at or after that time gets
        0.0 without taking another token. An idle bucket is forgotten once it would be full.
        """
        ...

    def bucket(self, task_name: str) -> Bucket | None:
        """``task_name``'s bucket as last touched, or None when it has none (idle)."""
        ...

    def overrides(self) -> dict[str, str]:
        """The runtime overrides: task name -> rate text as it was set."""
        ...

    def set_override(self, task_name: str, rate_text: str) -> None:
        """Set ``task_name``'s runtime override to ``rate_text`` (already validated)."""
        ...

    def remove_override(self, task_name: str) -> None:
        """Remove ``task_name``'s runtime override, if any."""
        ...
