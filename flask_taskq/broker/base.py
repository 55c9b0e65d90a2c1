"""The broker interface: the one seam between flask-taskq and where messages live."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..serializer import Serializer
    from ..store import Store


@dataclass(slots=True)
class Delivery:
    """A message handed to one consumer; it stays leased to it until acked or requeued."""

    queue: str
    priority: int
    entry_id: str  # broker-specific handle of this delivery
    body: bytes
    deliveries: int = 1  # how many times this message was handed out


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What one queue holds, as :meth:`Broker.queue_stats` reads it."""

    ready: int = 0  # waiting for a worker
    leased: int = 0  # delivered and not yet acknowledged
    delayed: int = 0  # waiting for their countdown or ETA
    dead: int = 0  # dead letters
    next_due: float | None = None  # unix time the first delayed message is due

    @property
    def unfinished(self) -> int:
        """Messages sent and not yet finished (ready or leased)."""
        return self.ready + self.leased


class Settler(Protocol):
    """What a broker offers a worker that settles a batch in one call (the Redis broker
    where ``can_settle``): its sends, results and acks in one command, alone or at the
    head of a fetch."""

    def carries(self, queue: str, priority: int) -> bool:
        """Whether a message to ``queue`` at ``priority`` can go in the settling call."""

    def settle_command(
        self,
        consumer: str,
        deliveries: Sequence[Delivery],
        results: Sequence[tuple[str, bytes, int]],
        ttl: int,
        sends: Sequence[tuple[str, int, bytes]] = (),
    ) -> tuple[tuple[Any, ...], Callable[[Any], list[Delivery]]]:
        """The settling command and a reader of its reply (skipped deliveries)."""

    def ack_storing(
        self,
        consumer: str,
        deliveries: Sequence[Delivery],
        results: Sequence[tuple[str, bytes, int]],
        ttl: int,
        sends: Sequence[tuple[str, int, bytes]] = (),
    ) -> list[Delivery]:
        """Send the settling command alone; return the deliveries it skipped."""

    def fetch(
        self,
        consumer: str,
        queues: Sequence[str],
        count: int,
        timeout: float,
        then: Piggyback | None = None,
        first: tuple[tuple[Any, ...], Callable[[Any], object]] | None = None,
    ) -> list[Delivery]:
        """A fetch with ``first`` (a settling command and its reply's callback) at its
        head, in the same round trip."""


class Piggyback(Protocol):
    """Reads that ride along with a fetch (the revocations made up to the moment the
    messages were taken), so that acting on what arrived costs no extra round trip."""

    def sync_commands(self) -> list[tuple[str, ...]]:
        """Raw commands to run after the wait."""

    def apply_sync(self, replies: list[Any]) -> None:
        """Take their replies, in order."""


class Broker(Protocol):
    """What the worker and the API need from a broker.

    Every method raises :class:`flask_taskq.BrokerConnectionError` (API side) or one of
    :attr:`connection_errors` (worker side, which reconnects) when the server is gone.
    """

    #: Exceptions meaning the transport is unreachable or refuses for now (lost
    #: connection, out of memory, read-only replica): a worker backs off and retries the
    #: step, never dies of them. Empty for a transport that cannot fail so.
    errors: tuple[type[BaseException], ...]
    #: The part of :attr:`errors` meaning "cannot be reached": reconnecting may help.
    connection_errors: tuple[type[BaseException], ...]

    def maybe_sent(self, exc: BaseException) -> bool:
        """True if ``exc`` (one of :attr:`connection_errors`, from an enqueue) came after
        the message was handed to the server: it may be enqueued although the call
        failed."""

    def resend_unsafe(self, exc: BaseException) -> bool:
        """True if an enqueue that failed with ``exc`` must not be tried again: the server
        may still act on what it received (a timeout after the message was written), so
        a second attempt could enqueue it twice."""

    def ping(self) -> None:
        """Raise one of :attr:`errors` when the server cannot be reached."""

    def enqueue(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Make a message ready for workers of ``queue``, or at unix time ``eta``;
        ``timeout`` bounds the call (seconds) where the transport can block."""

    def enqueue_many(
        self, items: Iterable[tuple[str, int, bytes, float | None]], *, timeout: float | None = None
    ) -> None:
        """Enqueue several ``(queue, priority, body, eta)`` messages in one round trip."""

    def promote(self, queues: Sequence[str], limit: int = 1000) -> float | None:
        """Make delayed messages that are due ready; return the next due time, if any."""

    def fetch(
        self,
        consumer: str,
        queues: Sequence[str],
        count: int,
        timeout: float,
        then: Piggyback | None = None,
    ) -> list[Delivery]:
        """Lease up to ``count`` ready messages to ``consumer``, waiting up to ``timeout``
        seconds for the first one. Higher priorities come first. ``then``'s commands
        run right after the messages are taken, in the same round trip."""

    def ensure_groups(self, queues: Sequence[str]) -> None:
        """Prepare ``queues`` for consuming (idempotent); they join :meth:`known_queues`."""

    def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Finish deliveries: the messages leave the broker. Return those skipped
        because ``consumer`` no longer holds them (another worker took them over)."""

    def requeue(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Give unstarted deliveries back so any worker can take them at once; return
        those skipped because ``consumer`` no longer holds them."""

    def renew(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Extend the leases of held deliveries; return those no longer held."""

    def reclaim(
        self, consumer: str, queues: Sequence[str], min_idle: float, count: int
    ) -> list[Delivery]:
        """Lease to ``consumer`` the deliveries whose lease expired ``min_idle`` ago."""

    def enqueue_unique(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None,
        key: str,
        task_id: str,
        ttl: int,
        *,
        timeout: float | None = None,
    ) -> str:
        """Enqueue unless a task holding ``key`` is waiting or running; atomically take
        the key for ``ttl`` seconds. Return the id of the task that holds the key."""

    def note_start(self, delivery: Delivery) -> int:
        """Count a start of a redelivered message (kept a day); return the count."""

    def release_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` still holds it (the task finished)."""

    def reschedule(
        self, consumer: str, items: Sequence[tuple[Delivery, bytes, float]]
    ) -> list[Delivery]:
        """Atomically replace each held delivery by a new message body due at a unix
        time (a retry): the new one is stored before the old one is acknowledged.
        Return the deliveries skipped because ``consumer`` no longer holds them."""

    def dead_letter(
        self,
        consumer: str,
        delivery: Delivery,
        reason: str,
        task: str,
        task_id: str,
        traceback: str = "",
    ) -> int:
        """Move a delivery to the dead-letter store with ``reason``, atomically (one that
        ``consumer`` no longer holds is left alone); return how many of the store's
        oldest entries were dropped to keep it within its bounds."""

    def dead_letters(
        self, queue: str, count: int = 100, before: str | None = None
    ) -> list[dict[str, object]]:
        """The newest ``count`` dead letters of ``queue``, newest first (with ``before``,
        an entry id: those older than it). Each is a dict with ``entry_id``, ``body``
        (bytes), and the texts ``reason``, ``task``, ``id`` (task id), ``queue``, ``time``
        (unix time), ``worker`` and ``traceback``."""

    def dead_letter_get(self, queue: str, entry_id: str) -> dict[str, object] | None:
        """The dead letter ``entry_id`` of ``queue`` (as in ``dead_letters``), or None."""

    def dead_letter_count(self, queue: str) -> int:
        """How many dead letters ``queue`` holds."""

    def dead_letter_queues(self) -> list[str]:
        """The queues known to the broker that hold dead letters."""

    def requeue_dead(
        self, queue: str, entry_ids: Sequence[str], serializer: Serializer | None = None
    ) -> int:
        """Atomically move dead letters back to ``queue`` as new messages (same body and
        task id, delivery count starting anew) at the priority ``serializer`` reads from
        each body (5 when unreadable); return how many moved. Unknown ids are skipped."""

    def purge_dead(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""

    def delete_dead(self, queue: str, entry_ids: Sequence[str]) -> int:
        """Delete the dead letters ``entry_ids`` of ``queue``; return how many were
        deleted. Unknown ids are skipped."""

    def forget_consumer(self, consumer: str, queues: Sequence[str]) -> None:
        """Drop ``consumer`` (on graceful stop) from every stream where it holds nothing;
        never delete a message it (or another process of that name) still holds."""

    def renew_consumers(self, consumers: Sequence[str], queues: Sequence[str]) -> int:
        """Extend every lease held by each of ``consumers`` in ``queues`` (a prefork
        supervisor, for its live children); return how many were extended."""

    def queue_length(self, queue: str) -> int:
        """Messages of ``queue`` not yet delivered to any worker."""

    def known_queues(self) -> set[str]:
        """The queues this broker knows of: those a worker consumed
        (:meth:`ensure_groups`), and on a transport that tracks them cheaply, those sent
        to."""

    def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats]:
        """What each of ``queues`` holds (ready, leased, delayed and dead messages), read
        in one round trip."""

    def purge(self, queue: str) -> int:
        """Delete the ready messages of ``queue``; return how many."""

    def store(self) -> Store:
        """The store that lives beside this transport, on its connections where it can
        share them (Redis); the memory broker returns the same store every time."""

    def set_reply_timeout(self, seconds: float) -> None:
        """Wait at most ``seconds`` for any later reply (a caller that must never hang
        on a frozen server, such as the prefork supervisor)."""

    def after_fork(self) -> None:
        """In a forked child: drop the connections inherited from the parent without
        closing them (the parent still uses them); later calls open new ones."""

    def close(self) -> None:
        """Release connections."""
