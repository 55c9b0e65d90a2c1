"""The AMQP broker: RabbitMQ holds the ready messages, a Redis store the rest.

One durable classic queue per flask-taskq queue, named ``<TASKQ_KEY_PREFIX>.<queue>``,
declared with ``x-max-priority = 9`` (or quorum queues in priority bands, see
:mod:`.layout`); messages are persistent and published with
publisher confirms, so :meth:`AMQPBroker.enqueue` returns once RabbitMQ has them. A worker
consumes with manual acks under ``basic.qos``; RabbitMQ itself hands the unacknowledged
messages of a dead connection to another worker, so there are no leases to renew or
reclaim here. Countdown/ETA and retries wait in the store's delayed set and are published
when due. See docs/rabbitmq.rst.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ...keys import DEFAULT_PRIORITY, Keys
from ...redis_common import CONNECTION_ERRORS as REDIS_CONNECTION_ERRORS
from ...redis_common import ERRORS as REDIS_ERRORS
from ..base import Delivery, Piggyback, QueueStats
from ..direct import maybe_sent as redis_maybe_sent
from ..redis import MAX_DEAD_LETTER_BYTES
from .errors import AMQPConnectionError, MissingExtraError

try:
    import pika
    import pika.exceptions
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingExtraError() from None

from .dead import DeadLetters
from .layout import MAX_PRIORITY, QueueLayout
from .link import Link
from .side import RedisSide

if TYPE_CHECKING:
    from ...store import Store
    from ...store.memory import MemoryStore

logger = logging.getLogger("flask_taskq.worker")

#: Most messages RabbitMQ may push ahead of acknowledgement (``basic.qos`` maximum).
MAX_QOS = 65535
#: What needs a store, said once per process when there is none.
NO_STORE = (
    "flask-taskq: TASKQ_BROKER_URL is AMQP and there is no Redis store (set TASKQ_STORE_URL, "
    "or a Redis TASKQ_RESULT_BACKEND): results, exact countdown/ETA and retry delays, "
    "rate limits, revocations, unique tasks, chords and workflows, beat, worker "
    "heartbeats (inspect, dashboard), poison-message counting and the dead-letter store "
    "need one; plain tasks still run"
)
_said_no_store = False


@dataclass(slots=True)
class AMQPDelivery(Delivery):
    """A delivery on one connection (``generation``) with its delivery tag. Its
    ``entry_id`` is the message id, the same on every redelivery (as a stream entry id is
    on Redis), so that the replay check of signed messages lets redeliveries run."""

    generation: int = 0
    tag: int = 0


class AMQPBroker(DeadLetters):
    """Broker over RabbitMQ (AMQP 0-9-1, through pika), with shared state in Redis."""

    errors: tuple[type[BaseException], ...] = (AMQPConnectionError, *REDIS_ERRORS)
    connection_errors: tuple[type[BaseException], ...] = (
        AMQPConnectionError,
        *REDIS_CONNECTION_ERRORS,
    )

    def __init__(
        self,
        url: str,
        key_prefix: str = "taskq",
        store_url: str | None = None,
        dead_letter_max_bytes: int = MAX_DEAD_LETTER_BYTES,
        consumer_timeout: float = 1800.0,
        visibility_timeout: float = 30.0,
        queue_type: str = "classic",
        **_: object,
    ) -> None:
        self.url = url
        self.keys = Keys(key_prefix)
        self.prefix = key_prefix
        #: The RabbitMQ queues of each flask-taskq queue (``TASKQ_AMQP_QUEUE_TYPE``).
        self.layout = QueueLayout(key_prefix, queue_type)
        self.parameters = pika.URLParameters(url)
        self.side: RedisSide | None = (
            RedisSide(store_url, self.keys, int(dead_letter_max_bytes)) if store_url else None
        )
        if self.side is None:
            _say_no_store()
        #: A delivery held this long (seconds; half of RabbitMQ's ``consumer_timeout``,
        #: ``TASKQ_AMQP_CONSUMER_TIMEOUT``) is parked in the store (see :meth:`renew`).
        self.park_after = float(consumer_timeout) / 2
        #: A parked task whose worker stops renewing it is published again this long
        #: after the last renewal (``TASKQ_VISIBILITY_TIMEOUT``).
        self.park_lease = float(visibility_timeout)
        self._reply_timeout = 30.0
        self._link: Link | None = None
        self._link_lock = threading.Lock()
        self._cond = threading.Condition()
        # Owned by the I/O thread (read elsewhere under ``_cond``):
        self._inbox: deque[Delivery] = deque()  # delivered, not yet fetched
        # fetched, not yet settled: id -> (when, queue)
        self._handed: dict[str, tuple[float, str]] = {}
        # Long tasks parked in the store: entry id -> delayed-set member (survive reconnects).
        self._parked: dict[str, bytes] = {}
        self._consuming: dict[str, list[str]] = {}  # queue -> consumer tags
        self._windows: dict[str, int] = {}  # quorum: queue -> its consumers' window
        self._declared: set[str] = set()
        self._qos = 0
        self._tx: Any = None  # the channel of batches, in transaction mode
        self._known: set[str] = set()
        self._memory_store: MemoryStore | None = None
        _BROKERS.add(self)

    # -- names ----------------------------------------------------------------------------
    def queue_name(self, queue: str) -> str:
        """The RabbitMQ queue of flask-taskq queue ``queue``: ``<prefix>.<queue>`` (with
        quorum queues, the queue of its middle priority band)."""
        return self.layout.base(queue)

    def wait_queue_name(self, queue: str, priority: int = DEFAULT_PRIORITY) -> str:
        """Where delayed messages of ``queue`` wait when there is no store (with quorum
        queues, one wait queue per priority band)."""
        band = self.layout.route(queue, priority)[len(self.layout.base(queue)) :]
        return f"{self.prefix}-wait.{queue}{band}"

    def dead_queue_name(self, queue: str) -> str:
        """Where dead letters of ``queue`` go when there is no store."""
        return f"{self.prefix}-dead.{queue}"

    # -- the connection ---------------------------------------------------------------------
    def _get_link(self) -> Link:
        link = self._link
        if link is not None and link.pid != os.getpid():  # forked: the I/O thread stayed
            self.after_fork()
        with self._link_lock:
            if self._link is None:
                self._link = Link(self.parameters, on_open=self._on_open, on_lost=self._on_lost)
                self._link.reply_timeout = self._reply_timeout
            return self._link

    def _call(self, fn: Any, timeout: float | None = None) -> Any:
        return self._get_link().call(fn, timeout)

    def _on_open(self, channel: Any) -> None:
        self._reset()

    def _on_lost(self) -> None:
        self._reset()

    def _reset(self) -> None:
        with self._cond:
            self._inbox.clear()
            self._handed.clear()
            self._consuming.clear()
            self._declared.clear()
            self._qos = 0
            self._tx = None
            self._cond.notify_all()

    def _generation(self) -> int:
        link = self._link
        return link.generation if link is not None else -1

    def _declare(self, channel: Any, queue: str, priority: int = DEFAULT_PRIORITY) -> str:
        """Declare the RabbitMQ queues of ``queue`` (once per connection); return the one
        a message at ``priority`` goes to."""
        if queue not in self._declared:
            arguments = self.layout.arguments()
            for name in self.layout.names(queue):
                channel.queue_declare(queue=name, durable=True, arguments=arguments)
            self._declared.add(queue)
            self._known.add(queue)
        return self.layout.route(queue, priority)

    def _publish(
        self,
        channel: Any,
        queue: str,
        priority: int,
        body: bytes,
        *,
        routing_key: str | None = None,
        expiration: str | None = None,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish one persistent message and wait for RabbitMQ's confirm (I/O thread)."""
        name = routing_key or self._declare(channel, queue, priority)
        channel.basic_publish(
            exchange="",
            routing_key=name,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=2,
                priority=min(MAX_PRIORITY, max(0, int(priority))),
                message_id=message_id or uuid.uuid4().hex,
                expiration=expiration,
                headers=headers,
            ),
            mandatory=True,
        )

    # -- enqueue ----------------------------------------------------------------------------
    def maybe_sent(self, exc: BaseException) -> bool:
        """True if RabbitMQ (or the store) may have the message although the call failed."""
        if isinstance(exc, AMQPConnectionError):
            return exc.maybe_sent
        return redis_maybe_sent(exc)

    def resend_unsafe(self, exc: BaseException) -> bool:
        """Never: a second publish after an unconfirmed one may at worst duplicate the
        message, which at-least-once delivery allows (tasks are idempotent)."""
        return False

    def ping(self) -> None:
        """Raise :class:`AMQPConnectionError` (or a Redis error) when RabbitMQ (or the
        store) cannot be reached."""
        self._call(lambda channel: None)
        if self.side is not None:
            self.side.client.ping()

    def enqueue(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Publish one message (returns once RabbitMQ confirmed it), or keep it until
        ``eta``."""
        self.enqueue_many([(queue, priority, body, eta)], timeout=timeout)

    def enqueue_many(
        self, items: Iterable[tuple[str, int, bytes, float | None]], *, timeout: float | None = None
    ) -> None:
        """Publish several messages in one hand-over to the connection thread, each
        confirmed; delayed ones go to the store (or the wait queue)."""
        now = time.time()
        ready: list[tuple[str, int, bytes]] = []
        later: list[tuple[str, int, bytes, float]] = []
        for queue, priority, body, eta in items:
            if eta is not None and eta > now:
                later.append((queue, priority, body, eta))
            else:
                ready.append((queue, priority, body))
        if later:
            self._delay(later, timeout)
        if len(ready) == 1:
            queue, priority, body = ready[0]
            self._call(lambda channel: self._publish(channel, queue, priority, body), timeout)
        elif ready:
            self._call(lambda channel: self._publish_batch(channel, ready), timeout)

    def _publish_batch(self, channel: Any, items: Sequence[tuple[str, int, bytes]]) -> None:
        """Publish several messages in one AMQP transaction (I/O thread): ``tx.commit``
        returns once RabbitMQ has them all, one round trip for the batch where publisher
        confirms in pika's blocking API wait for each message."""
        if self._tx is None:
            self._tx = channel.connection.channel()
            self._tx.tx_select()
        tx = self._tx
        for queue, _, _ in items:
            self._declare(channel, queue)
        try:
            for queue, priority, body in items:
                route = self.layout.route(queue, priority)
                self._publish(tx, queue, priority, body, routing_key=route)
            tx.tx_commit()
        except BaseException:
            self._tx = None
            raise

    def _delay(self, items: Sequence[tuple[str, int, bytes, float]], timeout: float | None) -> None:
        """Keep messages until they are due: in the store's delayed set, or without a
        store in the queue's wait queue (per-message TTL, dead-lettered into the queue)."""
        if self.side is not None:
            self.side.delay(items)
            return

        def park(channel: Any) -> None:
            now = time.time()
            for queue, priority, body, due in items:
                target = self._declare(channel, queue, priority)
                wait = self.wait_queue_name(queue, priority)
                channel.queue_declare(
                    queue=wait,
                    durable=True,
                    arguments={
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": target,
                    },
                )
                ms = max(0, int((due - now) * 1000))
                self._publish(channel, queue, priority, body, routing_key=wait, expiration=str(ms))

        self._call(park, timeout)

    def promote(self, queues: Sequence[str], limit: int = 1000) -> float | None:
        """Publish the store's due delayed messages of ``queues``; return the next due
        time. Without a store RabbitMQ promotes them itself (wait queues)."""
        if self.side is None or not queues:
            return None
        claimed, next_due = self.side.claim_due(list(queues), limit)
        if claimed:

            def publish(channel: Any) -> None:
                for queue, member in claimed:
                    priority, message_id, body = _unpack(member)
                    self._publish(channel, queue, priority, body, message_id=message_id)

            self._call(publish)
            self.side.unclaim(claimed)
        return next_due

    # -- consume ----------------------------------------------------------------------------
    def ensure_groups(self, queues: Sequence[str]) -> None:
        """Declare ``queues`` (idempotent) and record them as known."""

        def declare(channel: Any) -> None:
            for queue in queues:
                self._declare(channel, queue)

        self._call(declare)
        self._known.update(queues)
        if self.side is not None:
            self.side.add_queues(list(queues))

    def _on_message(
        self, queue: str, generation: int, channel: Any, method: Any, properties: Any, body: bytes
    ) -> None:
        message_id = properties.message_id or hashlib.sha1(body).hexdigest()
        delivery = AMQPDelivery(
            queue,
            int(properties.priority or 0),
            str(message_id),
            body,
            2 if method.redelivered else 1,
            generation,
            int(method.delivery_tag),
        )
        with self._cond:
            self._inbox.append(delivery)
            self._cond.notify_all()

    def _prepare(self, channel: Any, queues: Sequence[str], count: int) -> None:
        """Consume exactly ``queues`` with room for ``count`` more messages (I/O thread).

        Classic queues: one prefetch window for the channel, moved to what this process
        holds plus ``count`` before each fetch. Quorum queues refuse a channel-wide
        window: each consumer gets its own, set when it subscribes."""
        link = self._get_link()
        for queue in [q for q in self._consuming if q not in queues]:
            for tag in self._consuming.pop(queue):
                channel.basic_cancel(tag)
            with self._cond:
                back = [d for d in self._inbox if d.queue == queue]
                self._inbox = deque(d for d in self._inbox if d.queue != queue)
            for d in back:
                channel.basic_nack(delivery_tag=_tag(d), requeue=True)
        with self._cond:
            held = len(self._handed) + len(self._inbox)
        wanted = min(MAX_QOS, held + max(1, count))
        quorum = self.layout.quorum
        if wanted != self._qos and not quorum:
            channel.basic_qos(prefetch_count=wanted, global_qos=True)
            self._qos = wanted
        for queue in queues:
            if quorum and queue in self._consuming and wanted > self._windows.get(queue, 0):
                # a consumer's window is fixed when it subscribes: subscribe again with a
                # wider one (what was delivered stays held and can still be acknowledged)
                for tag in self._consuming.pop(queue):
                    channel.basic_cancel(tag)
            if queue not in self._consuming:
                self._declare(channel, queue)
                if quorum:
                    channel.basic_qos(prefetch_count=wanted, global_qos=False)
                    self._windows[queue] = wanted
                callback = functools.partial(self._on_message, queue, link.generation)
                self._consuming[queue] = [
                    channel.basic_consume(queue=name, on_message_callback=callback, auto_ack=False)
                    for name in self.layout.names(queue)
                ]

    def _take(self, queues: Sequence[str], count: int) -> list[Delivery]:
        """Up to ``count`` delivered messages of ``queues``, highest priority first
        (under ``_cond``)."""
        if not self._inbox:
            return []
        wanted = set(queues)
        mine = sorted((d for d in self._inbox if d.queue in wanted), key=lambda d: -d.priority)[
            :count
        ]
        if mine:
            taken = {id(d) for d in mine}
            self._inbox = deque(d for d in self._inbox if id(d) not in taken)
            now = time.monotonic()
            self._handed.update((d.entry_id, (now, d.queue)) for d in mine)
        return mine

    def fetch(
        self,
        consumer: str,
        queues: Sequence[str],
        count: int,
        timeout: float,
        then: Piggyback | None = None,
    ) -> list[Delivery]:
        """Take up to ``count`` messages RabbitMQ delivered, waiting up to ``timeout``
        seconds for the first; ``basic.qos`` lets RabbitMQ push only as many as this
        process holds plus ``count``."""
        with self._cond:
            out = self._take(queues, count)
        if not out:
            self._call(lambda channel: self._prepare(channel, list(queues), count))
            deadline = time.monotonic() + max(0.0, timeout)
            with self._cond:
                while True:
                    out = self._take(queues, count)
                    left = deadline - time.monotonic()
                    if out or left <= 0:
                        break
                    self._cond.wait(left)
        if then is not None and self.side is not None:
            then.apply_sync(self.side.run(then.sync_commands()))
        return out

    def _settle(self, deliveries: Sequence[Delivery], action: Any) -> list[Delivery]:
        """Run ``action(channel, tag)`` on each delivery of the current connection, in
        the I/O thread; return the others (their connection is gone: RabbitMQ has given
        them to another consumer)."""
        if not deliveries:
            return []

        def settle(channel: Any) -> list[Delivery]:
            generation = self._get_link().generation
            stale = []
            for d in deliveries:
                if _generation_of(d) != generation or d.entry_id not in self._handed:
                    stale.append(d)
                    continue
                action(channel, _tag(d))
                with self._cond:
                    self._handed.pop(d.entry_id, None)
            return stale

        stale: list[Delivery] = self._call(settle)
        return stale

    def _skipped(self, what: str, consumer: str, stale: list[Delivery]) -> list[Delivery]:
        if stale:
            logger.warning(
                "Did not %s %d message(s): the AMQP connection they came on was lost, so "
                "RabbitMQ delivers them again (%s)",
                what,
                len(stale),
                consumer,
            )
        return stale

    def _split_parked(
        self, deliveries: Sequence[Delivery]
    ) -> tuple[list[tuple[Delivery, bytes]], list[Delivery]]:
        """The parked deliveries (with their members) and the others."""
        with self._cond:
            parked = [
                (d, self._parked[d.entry_id]) for d in deliveries if d.entry_id in self._parked
            ]
        if not parked:
            return [], list(deliveries)
        ids = {id(d) for d, _ in parked}
        return parked, [d for d in deliveries if id(d) not in ids]

    def _unpark(self, consumer: str, parked: Sequence[tuple[Delivery, bytes]]) -> list[Delivery]:
        """Delete parked copies (their task finished); return the deliveries whose copy
        was gone already (published again after its lease ran out)."""
        if not parked or self.side is None:
            return []
        removed = self.side.remove([(d.queue, member) for d, member in parked])
        self.side.forget_parked(consumer, [d.entry_id for d, _ in parked])
        with self._cond:
            for d, _ in parked:
                self._parked.pop(d.entry_id, None)
        return [d for (d, _), ok in zip(parked, removed, strict=True) if not ok]

    def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Acknowledge deliveries (they leave RabbitMQ, or a parked one the store);
        return those no longer held (their connection was lost)."""
        parked, rest = self._split_parked(deliveries)
        stale = self._unpark(consumer, parked)
        stale += self._settle(rest, lambda ch, tag: ch.basic_ack(delivery_tag=tag))
        return self._skipped("acknowledge", consumer, stale)

    def requeue(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Give unstarted deliveries back (``basic.nack`` with requeue)."""
        parked, rest = self._split_parked(deliveries)
        if parked and self.side is not None:  # due now: the next promote publishes them
            due = time.time()
            self.side.extend([(d.queue, m) for d, m in parked], due)
            self.side.forget_parked(consumer, [d.entry_id for d, _ in parked])
            with self._cond:
                for d, _ in parked:
                    self._parked.pop(d.entry_id, None)
        if rest:
            # Stop consuming first (the next fetch subscribes again): else RabbitMQ would
            # push the returned messages straight back into this process's inbox, where
            # no other worker could take them (on a graceful stop, for its whole grace).
            self._call(self._unsubscribe)
        stale = self._settle(rest, lambda ch, tag: ch.basic_nack(delivery_tag=tag, requeue=True))
        return self._skipped("requeue", consumer, stale)

    def _unsubscribe(self, channel: Any) -> None:
        """Cancel every consumer and give back what was delivered and not fetched (I/O
        thread)."""
        for tags in self._consuming.values():
            for tag in tags:
                channel.basic_cancel(tag)
        self._consuming.clear()
        with self._cond:
            back, self._inbox = list(self._inbox), deque()
        generation = self._get_link().generation
        for d in back:
            if _generation_of(d) == generation:
                channel.basic_nack(delivery_tag=_tag(d), requeue=True)

    def renew(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """A delivery lasts as long as its connection: return those of a lost one.

        RabbitMQ closes the channel of a delivery unacknowledged for longer than its
        ``consumer_timeout`` (and redelivers all of the channel's messages). So a delivery
        held longer than :attr:`park_after` is *parked*: a copy goes to the store's
        delayed set, due :attr:`park_lease` seconds from now, and the delivery is
        acknowledged. Each renewal moves the copy's due time on; finishing the task
        deletes it; if the worker dies, the copy becomes due and is published again.
        """
        generation = self._generation()
        with self._cond:
            parked = {
                d.entry_id: self._parked[d.entry_id]
                for d in deliveries
                if d.entry_id in self._parked
            }
            taken = {entry_id: when for entry_id, (when, _) in self._handed.items()}
        lost = [
            d for d in deliveries if d.entry_id not in parked and _generation_of(d) != generation
        ]
        if self.side is None:
            return lost
        due = time.time() + self.park_lease
        if parked:
            held = [d for d in deliveries if d.entry_id in parked]
            kept = self.side.extend([(d.queue, parked[d.entry_id]) for d in held], due)
            for d, ok in zip(held, kept, strict=True):
                if not ok:
                    lost.append(d)
                    with self._cond:
                        self._parked.pop(d.entry_id, None)
        now = time.monotonic()
        old = [
            d
            for d in deliveries
            if d.entry_id not in parked
            and _generation_of(d) == generation
            and now - taken.get(d.entry_id, now) >= self.park_after
        ]
        if old:
            lost += self._park(consumer, old, due)
        return lost

    def _park(self, consumer: str, deliveries: list[Delivery], due: float) -> list[Delivery]:
        """Park long-held deliveries (see :meth:`renew`); return those found lost."""
        assert self.side is not None
        members = {d.entry_id: _pack(d) for d in deliveries}
        self.side.park(
            consumer, [(d.queue, d.entry_id, members[d.entry_id], due) for d in deliveries]
        )
        with self._cond:
            self._parked.update(members)
        try:
            stale = self._settle(deliveries, lambda ch, tag: ch.basic_ack(delivery_tag=tag))
        except BaseException:
            self._unpark(consumer, [(d, members[d.entry_id]) for d in deliveries])
            raise
        gone = {id(d) for d in stale}
        # acked meanwhile by the task's own finish, or lost with the connection: no copy
        self._unpark(consumer, [(d, members[d.entry_id]) for d in stale])
        parked = [d for d in deliveries if id(d) not in gone]
        if parked:
            logger.info(
                "Parked %d long-running task(s) in the store, before RabbitMQ's "
                "consumer_timeout (%s)",
                len(parked),
                consumer,
            )
        return [d for d in stale if _generation_of(d) != self._generation()]

    def reclaim(
        self, consumer: str, queues: Sequence[str], min_idle: float, count: int
    ) -> list[Delivery]:
        """Nothing to reclaim: RabbitMQ redelivers a dead connection's messages itself."""
        return []

    def forget_consumer(self, consumer: str, queues: Sequence[str]) -> None:
        """Nothing to forget: consumers end with their connection."""

    def renew_consumers(self, consumers: Sequence[str], queues: Sequence[str]) -> int:
        """Renew the copies ``consumers`` parked in the store (see :meth:`renew`), as a
        prefork supervisor does for its children: a child whose task holds the GIL cannot
        renew its own. Deliveries not parked need no renewal. Return how many."""
        if self.side is None or not consumers:
            return 0
        return self.side.renew_parked(list(consumers), time.time() + self.park_lease)

    def reschedule(
        self, consumer: str, items: Sequence[tuple[Delivery, bytes, float]]
    ) -> list[Delivery]:
        """Store each next attempt (due at a unix time), then acknowledge the delivery it
        replaces; return the deliveries of a lost connection (left alone)."""
        generation = self._generation()
        parked, _ = self._split_parked([d for d, _, _ in items])
        parked_ids = {id(d) for d, _ in parked}
        live = [
            (d, body, due)
            for d, body, due in items
            if id(d) in parked_ids or _generation_of(d) == generation
        ]
        stale = [d for d, _, _ in items if id(d) not in {id(x) for x, _, _ in live}]
        if live:
            now = time.time()
            ready = [(d.queue, d.priority, body) for d, body, due in live if due <= now]
            later = [(d.queue, d.priority, body, due) for d, body, due in live if due > now]
            if later:
                self._delay(later, None)
            if ready:

                def publish(channel: Any) -> None:
                    for queue, priority, body in ready:
                        self._publish(channel, queue, priority, body)

                self._call(publish)
            # the next attempts are stored: now the deliveries they replace may go
            stale += self._unpark(consumer, parked)
            rest = [d for d, _, _ in live if id(d) not in parked_ids]
            stale += self._settle(rest, lambda ch, tag: ch.basic_ack(delivery_tag=tag))
        return self._skipped("reschedule", consumer, stale)

    def dead_letter(
        self,
        consumer: str,
        delivery: Delivery,
        reason: str,
        task: str,
        task_id: str,
        traceback: str = "",
    ) -> int:
        """Store the delivery as a dead letter, then acknowledge it; return how many of
        the store's oldest dead letters were trimmed. Without a store the dead letter
        goes to the RabbitMQ queue ``<prefix>-dead.<queue>``."""
        parked, _ = self._split_parked([delivery])
        if not parked and _generation_of(delivery) != self._generation():
            self._skipped("dead-letter", consumer, [delivery])
            return 0
        trimmed = 0
        if self.side is not None:
            trimmed = self.side.add_dead(
                delivery.queue, delivery.body, reason, task, task_id, consumer, traceback
            )
        else:
            headers = {"reason": reason, "task": task, "id": task_id, "worker": consumer}

            def park(channel: Any) -> None:
                name = self.dead_queue_name(delivery.queue)
                channel.queue_declare(queue=name, durable=True)
                self._publish(
                    channel, delivery.queue, 0, delivery.body, routing_key=name, headers=headers
                )

            self._call(park)
        self.ack(consumer, [delivery])
        return trimmed

    def note_start(self, delivery: Delivery) -> int:
        """Count a start of a redelivered message in the store (without one: 1, so that
        poison messages are not detected)."""
        if self.side is None:
            return 1
        return self.side.note_start(delivery.queue, delivery.entry_id)

    # -- unique tasks ------------------------------------------------------------------------
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
        """Take the unique lock in the store, then publish; return the lock's owner."""
        if self.side is None:
            raise RuntimeError(
                "unique tasks need a store beside RabbitMQ: set TASKQ_STORE_URL to a Redis URL"
            )
        owner = self.side.take_unique(key, task_id, ttl)
        if owner is not None:
            return owner
        try:
            self.enqueue(queue, priority, body, eta, timeout=timeout)
        except BaseException:
            try:
                self.side.release_unique(key, task_id)
            except Exception:
                pass
            raise
        return task_id

    def release_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` still holds it."""
        if self.side is not None:
            self.side.release_unique(key, task_id)

    # -- inspection --------------------------------------------------------------------------
    def _counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Ready messages of each queue (passive declares on a channel of their own, which
        RabbitMQ closes for a queue that does not exist)."""

        def count(channel: Any) -> dict[str, int]:
            out: dict[str, int] = {}
            spare = channel.connection.channel()
            try:
                for queue in queues:
                    out[queue] = 0
                    for name in self.layout.names(queue):
                        try:
                            ok = spare.queue_declare(queue=name, passive=True)
                            out[queue] += int(ok.method.message_count)
                        except pika.exceptions.ChannelClosedByBroker:
                            spare = channel.connection.channel()
            finally:
                if spare.is_open:
                    spare.close()
            return out

        result: dict[str, int] = self._call(count)
        return result

    def queue_length(self, queue: str) -> int:
        """Messages of ``queue`` ready in RabbitMQ."""
        return self._counts([queue])[queue]

    def known_queues(self) -> set[str]:
        """The queues a worker consumed (recorded in the store) and those this process
        declared."""
        known = set(self._known)
        if self.side is not None:
            known |= self.side.known_queues()
        return known

    def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats]:
        """Ready messages from RabbitMQ; delayed and dead ones from the store. Leased
        (delivered, unacknowledged) messages are not counted by AMQP's ``queue.declare``:
        they are the sum of what the live workers' heartbeats say they hold (``reserved``,
        as old as a heartbeat interval; 0 without a store), or what the AMQP consumers of
        this process hold now, whichever is more (an in-process worker's heartbeat may
        not have caught up: ``flask_taskq.testing``'s ``drain()`` needs the fresh count)."""
        names = list(dict.fromkeys(queues))
        if not names:
            return {}
        ready = self._counts(names)
        extra = self.side.delayed_stats(names) if self.side else [(0, None, 0)] * len(names)
        leased = self._reserved() if self.side else {}
        return {
            q: QueueStats(
                ready=ready[q],
                leased=max(leased.get(q, 0), _held_here(q)),
                delayed=d,
                dead=dead,
                next_due=due,
            )
            for q, (d, due, dead) in zip(names, extra, strict=True)
        }

    def _reserved(self) -> dict[str, int]:
        """Per queue, the unacknowledged deliveries the live workers hold (heartbeats)."""
        total: dict[str, int] = {}
        for process in self.store().monitor.processes():
            for queue, n in (process.get("reserved") or {}).items():
                total[queue] = total.get(queue, 0) + int(n)
        return total

    def unfetched(self) -> dict[str, int]:
        """Per queue, the deliveries RabbitMQ pushed to this process that no consumer
        fetched yet (unacknowledged too: a worker's heartbeat adds them to what it
        holds)."""
        with self._cond:
            out: dict[str, int] = {}
            for d in self._inbox:
                out[d.queue] = out.get(d.queue, 0) + 1
            return out

    def purge(self, queue: str) -> int:
        """Delete the ready and delayed messages of ``queue``; return how many."""

        def purge(channel: Any) -> int:
            self._declare(channel, queue)
            return sum(
                int(channel.queue_purge(queue=name).method.message_count)
                for name in self.layout.names(queue)
            )

        purged: int = self._call(purge)
        if self.side is not None:
            purged += self.side.purge_delayed(queue)
        return purged

    # -- the rest ------------------------------------------------------------------------------
    def store(self) -> Store:
        """The Redis store (``TASKQ_STORE_URL`` or a Redis result backend); without one
        a memory store of this process, so that plain tasks still run."""
        if self.side is not None:
            from ...store.redis import RedisStore
            from .workflows import DelayedCallbacks

            store = RedisStore(self.side.client, self.keys)
            store.workflows = DelayedCallbacks(store.workflows)
            return cast("Store", store)
        if self._memory_store is None:
            from ...store.memory import MemoryStore

            self._memory_store = MemoryStore()
        return cast("Store", self._memory_store)

    def set_reply_timeout(self, seconds: float) -> None:
        """Wait at most ``seconds`` for RabbitMQ (and the store) from now on."""
        self._reply_timeout = seconds
        if self._link is not None:
            self._link.reply_timeout = seconds
        if self.side is not None:
            self.side.client.connection_pool.connection_kwargs["socket_timeout"] = seconds

    def after_fork(self) -> None:
        """Forget the parent's connection (its I/O thread did not survive the fork) and
        the store's pooled connections; later calls open new ones."""
        self._link = None
        self._link_lock = threading.Lock()
        self._cond = threading.Condition()
        self._inbox = deque()
        self._handed = {}
        self._parked = {}
        self._consuming = {}
        self._declared = set()
        self._qos = 0
        self._tx = None
        if self.side is not None:
            try:
                self.side.client.connection_pool.reset()
            except Exception:
                pass

    def close(self) -> None:
        """Close the AMQP connection (RabbitMQ requeues what was not acknowledged) and the
        store's connections."""
        link, self._link = self._link, None
        if link is not None:
            link.close()
        if self.side is not None:
            self.side.client.close()


#: The AMQP brokers of this process: :meth:`AMQPBroker.queue_stats` counts what they hold
#: as leased (an in-process worker's, for ``flask_taskq.testing``'s ``drain()``).
_BROKERS: weakref.WeakSet[AMQPBroker] = weakref.WeakSet()


def _held_here(queue: str) -> int:
    """Messages of ``queue`` delivered to the AMQP brokers of this process and not yet
    settled."""
    held = 0
    for broker in list(_BROKERS):
        with broker._cond:
            held += sum(1 for d in broker._inbox if d.queue == queue)
            held += sum(1 for _, q in broker._handed.values() if q == queue)
    return held


def _generation_of(delivery: Delivery) -> int:
    return delivery.generation if isinstance(delivery, AMQPDelivery) else -1


def _tag(delivery: Delivery) -> int:
    return delivery.tag if isinstance(delivery, AMQPDelivery) else 0


#: First byte of a parked delivery's member in the delayed set (others start with the
#: priority digit): ``P<priority><message id>\n<body>``, so that it is published again
#: under its own message id.
PARKED = b"P"


def _pack(delivery: Delivery) -> bytes:
    return (
        PARKED
        + str(delivery.priority).encode()
        + delivery.entry_id.encode()
        + b"\n"
        + delivery.body
    )


def _unpack(member: bytes) -> tuple[int, str | None, bytes]:
    """Priority, message id (None: a new one) and body of a delayed-set member."""
    message_id = None
    if member[:1] == PARKED:
        head, _, body = member[2:].partition(b"\n")
        message_id, member = head.decode(), member[1:2] + body
    digit = member[:1]
    return (int(digit) if digit.isdigit() else DEFAULT_PRIORITY), message_id, member[1:]


def _say_no_store() -> None:
    global _said_no_store
    if not _said_no_store:
        _said_no_store = True
        logging.getLogger("flask_taskq").warning(NO_STORE)
