"""The store's concurrency concern: the slots of per-key concurrency limits, and the
messages parked until a slot is free (``docs/concurrency.rst``).

A key is ``<task>:<key value>``. Each holder has a lease (by the store's clock) that its
worker renews; a holder whose lease ran out (its worker died) loses its slot. Every call
on a key touches that key only (one Redis Cluster slot); sending a woken message to its
queue is the caller's, before it confirms with :meth:`ConcurrencyStore.woken`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Parked:
    """A message waiting for a slot, as it goes back to its queue."""

    task_id: str
    queue: str
    priority: int
    body: bytes

    def pack(self) -> bytes:
        """``<priority>:<queue>\\n<body>``, as the store keeps it."""
        return f"{self.priority}:{self.queue}\n".encode() + self.body

    @classmethod
    def unpack(cls, task_id: str, data: bytes) -> Parked:
        """The inverse of :meth:`pack`."""
        head, _, body = data.partition(b"\n")
        priority, _, queue = head.decode().partition(":")
        return cls(task_id, queue, int(priority), body)


@dataclass(frozen=True, slots=True)
class Slots:
    """A key's slots after a call."""

    #: acquire: True when the caller holds a slot (run it), False when the message was
    #: parked; None for the other calls.
    granted: bool | None
    #: Holders now (those woken by this call included).
    holders: int
    #: Parked messages, and woken ones not yet confirmed.
    waiting: int
    #: Messages woken by this call: send each to its queue, then call ``woken``.
    woken: list[Parked] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class KeyState:
    """What ``inspect concurrency`` shows of a key."""

    key: str
    limit: int
    holders: int
    waiting: int


class ConcurrencyStore(Protocol):
    """Slots and parked messages per concurrency key."""

    def acquire(self, key: str, limit: int, lease: float, message: Parked) -> Slots:
        """Take a slot of ``key`` for ``message`` (at most ``limit`` holders, each for
        ``lease`` seconds unless renewed), or park it. A task id that holds a slot
        already (woken, or redelivered after its worker died) keeps it; waiters ahead
        of it are woken into free slots first."""
        ...

    def release(self, key: str, task_id: str, lease: float) -> Slots:
        """Give back ``task_id``'s slot; wake waiters into the free slots (they hold
        them for ``lease`` seconds until they arrive)."""
        ...

    def wake(self, key: str, lease: float) -> Slots:
        """Free the slots of expired holders and wake waiters into free slots."""
        ...

    def renew(self, key: str, task_ids: list[str], lease: float) -> int:
        """Extend the leases of ``task_ids`` (holders of ``key``); how many still held."""
        ...

    def woken(self, key: str, task_ids: list[str]) -> None:
        """Forget the parked copies of woken messages, once sent to their queue."""
        ...

    def note(self, key: str) -> None:
        """Remember ``key`` as one at its limit (for the reapers and ``inspect``)."""
        ...

    def noted(self) -> dict[str, float]:
        """The keys noted, each with a mark that changes when it is noted again."""
        ...

    def forget(self, key: str, mark: float) -> None:
        """Drop an idle ``key`` from the noted ones, unless noted again since ``mark``."""
        ...

    def state(self, key: str) -> KeyState:
        """The limit, live holders and waiting messages of ``key``."""
        ...
