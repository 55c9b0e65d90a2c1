"""The Redis broker: one stream per queue and priority, one consumer group for all workers.

A delivered message stays in its stream's pending entries list (PEL) under the consumer that
took it; that entry is its lease. Live workers renew their leases (``renew.lua``); any worker
takes over leases idle longer than the visibility timeout (``reclaim.lua``). A message leaves
Redis only on ``ack`` (``ack.lua``: XACK + XDEL), ``requeue`` or ``dead_letter``, and each of
them acts only on entries the caller still owns: after a lost lease the entry belongs to the
worker that took it over. See docs/data-model.rst.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis

from ..exceptions import DecodeError
from ..keys import DEFAULT_PRIORITY, GROUP, PRIORITIES, Keys
from ..message import Message
from ..redis_common import (
    CONNECTION_ERRORS,
    ERRORS,
    MAX_BLOCK,
    connect,
    is_cluster,
    key_slot,
    load_script,
    reload_scripts,
    send_commands,
)
from ..serializer import JSONSerializer, Serializer
from .base import Delivery, Piggyback, QueueStats
from .direct import DirectCommands, mark_sent, maybe_sent, pack_head, pack_tail

if TYPE_CHECKING:
    from ..store.redis import RedisStore

MAX_DEAD_LETTERS = 100_000
#: Default of ``TASKQ_DEAD_LETTER_MAX_BYTES``: a dead-letter store larger than this (per
#: queue) loses its oldest entries.
MAX_DEAD_LETTER_BYTES = 256 * 1024 * 1024

logger = logging.getLogger("flask_taskq.worker")

#: Separates a sharded queue's name from its shard number (``default~3``) and a delivery's
#: entry id from the shard it came from.
SHARD_SEP = "~"
#: How fetch.lua knows a queue's default-priority stream (kept while the queue is empty)
#: among the others (which exist only while they hold messages).
ANCHOR = f":p{DEFAULT_PRIORITY}"
#: Seconds a send waits for ``TASKQ_WAIT_REPLICAS`` replicas when no timeout bounds it.
WAIT_REPLICAS_TIMEOUT = 5.0
#: Longest an ack batch waits for ``TASKQ_WAIT_REPLICAS`` replicas (seconds): a replica
#: that is down slows each ack flush by this much, not more.
ACK_WAIT_TIMEOUT = 1.0

#: Seconds between two clean-ups of a worker's groups by :meth:`RedisBroker.reclaim`
#: (consumers left by killed workers, ``TASKQ_IDLE_CONSUMER_TTL``).
PRUNE_EVERY = 60.0
#: Replies of a cluster node that does not (or no longer) own a key's slot.
_REDIRECTIONS = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)


class ReplicasNotReached(redis.TimeoutError):
    """Fewer than ``TASKQ_WAIT_REPLICAS`` replicas acknowledged a sent message in time. It
    was written to the master, so it may run; it may also be lost if the master fails
    before a replica has it. A send fails with
    :class:`~flask_taskq.BrokerConnectionError` (``maybe_sent`` true) on it."""


class RedisBroker:
    """Broker over Redis Streams (Redis 6.2+)."""

    errors = ERRORS
    connection_errors = CONNECTION_ERRORS

    def __init__(
        self,
        url: str,
        key_prefix: str = "taskq",
        client: redis.Redis | None = None,
        dead_letter_max_bytes: int = MAX_DEAD_LETTER_BYTES,
        wait_replicas: int = 0,
        queue_shards: Mapping[str, int] | None = None,
        idle_consumer_ttl: float = 0.0,
    ) -> None:
        self.url = url
        #: Seconds after which :meth:`reclaim` deletes a consumer that holds nothing and
        #: has not read (``TASKQ_IDLE_CONSUMER_TTL``; 0: never).
        self.idle_consumer_ttl = float(idle_consumer_ttl)
        self._next_prune = 0.0
        #: Replicas that must have each sent message before a send returns
        #: (``TASKQ_WAIT_REPLICAS``; 0: do not wait).
        self.wait_replicas = int(wait_replicas)
        #: Logical queue -> number of shards (``TASKQ_QUEUE_SHARDS``): a sharded queue is
        #: several queues ``<queue>``, ``<queue>~1``, ... whose keys hash to different
        #: slots; senders spread over them, workers consume them all.
        self.queue_shards = {q: int(n) for q, n in (queue_shards or {}).items() if int(n) > 1}
        self._next_shard = itertools.count()
        #: Bytes a queue's dead-letter store may hold (``TASKQ_DEAD_LETTER_MAX_BYTES``).
        self.dead_letter_max_bytes = int(dead_letter_max_bytes)
        self.keys = Keys(key_prefix)
        #: ``redis.Redis`` (or ``redis.RedisCluster``); redis-py's command methods are not
        #: all annotated, so it is handled as ``Any``.
        self.client: Any = client or connect(url)
        self._scripts = {
            name: load_script(self.client, name)
            for name in (
                "fetch",
                "ensure_groups",
                "requeue",
                "renew",
                "reclaim",
                "dead_letter",
                "purge",
                "promote",
                "reschedule",
                "enqueue_unique",
                "release_unique",
                "note_start",
                "ack",
                "settle",
                "send",
            )
        }
        self.direct = DirectCommands(self.client)
        #: True on a Redis Cluster: scripts over several queues run once per hash slot.
        self.cluster = is_cluster(self.client)
        self._slot_groups: dict[tuple[str, ...], list[list[str]]] = {}
        self._stream_of: dict[str, tuple[str, int, int]] = {}
        self._orders: dict[tuple[str, ...], list[list[str]]] = {}
        self._turn = 0
        self._acks_short = False  # the last ack WAIT saw fewer replicas than asked
        self._xadd_heads: dict[tuple[str, int], bytes] = {}

    # -- shards -------------------------------------------------------------------------
    def shard_names(self, queue: str) -> list[str]:
        """The queues holding ``queue``'s messages: ``[queue]``, or for a sharded queue
        ``[queue, "queue~1", ...]`` (each its own hash tag, so its own slot)."""
        n = self.queue_shards.get(queue, 1)
        return [queue] + [f"{queue}{SHARD_SEP}{k}" for k in range(1, n)]

    def _physical(self, queues: Sequence[str]) -> list[str]:
        if not self.queue_shards:
            return list(queues)
        return [name for q in queues for name in self.shard_names(q)]

    def _pick(self, queue: str) -> str:
        """The shard a new message of ``queue`` goes to (round robin; ``queue`` itself
        when it is not sharded)."""
        n = self.queue_shards.get(queue)
        if n is None:
            return queue
        k = next(self._next_shard) % n
        return queue if k == 0 else f"{queue}{SHARD_SEP}{k}"

    @staticmethod
    def _locate(delivery: Delivery) -> tuple[str, str]:
        """The shard queue and the stream entry id of ``delivery`` (a delivery of shard
        k > 0 carries ``~k`` after its entry id)."""
        entry_id = delivery.entry_id
        if SHARD_SEP in entry_id:
            raw, shard = entry_id.rsplit(SHARD_SEP, 1)
            return f"{delivery.queue}{SHARD_SEP}{shard}", raw
        return delivery.queue, entry_id

    def _split_ids(self, queue: str, entry_ids: Sequence[str]) -> dict[str, list[str]]:
        """Dead-letter ids of ``queue`` (suffixed ``~k`` on shard k > 0) by shard queue."""
        out: dict[str, list[str]] = {}
        for entry_id in entry_ids:
            raw, sep, shard = entry_id.partition(SHARD_SEP)
            out.setdefault(f"{queue}{SHARD_SEP}{shard}" if sep else queue, []).append(raw)
        return out

    # -- enqueue ------------------------------------------------------------------------
    def _enqueue_command(
        self, queue: str, priority: int, body: bytes, eta: float | None, now: float
    ) -> tuple[Any, ...]:
        if self.queue_shards:
            queue = self._pick(queue)
        if eta is not None and eta > now:
            return ("ZADD", self.keys.delayed(queue), repr(eta), str(priority).encode() + body)
        if priority == DEFAULT_PRIORITY:
            return ("XADD", self.keys.stream(queue, priority), "*", "m", body)
        # send.lua wakes idle workers when the stream is new; EVAL, as these roads do not
        # handle NOSCRIPT (Redis keeps the script compiled after the first call)
        anchor = self.keys.stream(queue, DEFAULT_PRIORITY)
        stream = self.keys.stream(queue, priority)
        return ("EVAL", self._scripts["send"].script, 2, stream, anchor, body)

    def _xadd_head(self, queue: str, priority: int) -> bytes:
        """The packed command that sends a message to ``queue`` at ``priority`` but its
        body: an ``XADD``, or at another priority than the default ``send.lua``."""
        stream = self.keys.stream(queue, priority)
        if priority == DEFAULT_PRIORITY:
            head = pack_head("XADD", stream, "*", "m")
        else:
            anchor = self.keys.stream(queue, DEFAULT_PRIORITY)
            head = pack_head("EVALSHA", self._scripts["send"].sha, 2, stream, anchor)
        self._xadd_heads[(queue, priority)] = head
        return head

    def _send_packed(self, parts: list[bytes], timeout: float) -> None:
        """Send packed commands of :meth:`_xadd_head` in one round trip; those refused
        with NOSCRIPT (a Redis that does not know ``send.lua`` yet) go again after it is
        loaded."""
        if len(parts) == 1:
            replies = self.direct.packed_many(parts[0], 1, timeout)
            if not isinstance(replies[0], Exception):
                return
        else:
            replies = self.direct.packed_many(b"".join(parts), len(parts), timeout)
        again = [p for p, r in zip(parts, replies, strict=True) if _no_script(r)]
        if again:
            self.client.script_load(self._scripts["send"].script)
            replies = self.direct.packed_many(b"".join(again), len(again), timeout)
        _raise_first_error(replies)

    def enqueue(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Send one message; ``timeout`` bounds the call (seconds) whatever the socket
        timeout. A ``TimeoutError`` after the command was written leaves it unknown
        whether Redis ran it (:func:`~flask_taskq.broker.direct.maybe_sent`)."""
        if eta is None and timeout is not None and self.direct.enabled and not self.wait_replicas:
            if self.queue_shards:
                queue = self._pick(queue)
            head = self._xadd_heads.get((queue, priority))
            if head is None:
                head = self._xadd_head(queue, priority)
            self._send_packed([pack_tail(head, body)], timeout)
            return
        command = self._enqueue_command(queue, priority, body, eta, time.time())
        if self.wait_replicas:
            _raise_first_error(self._replicated([command], timeout))
            return
        if self.direct.enabled or timeout is not None:
            self.direct.command(*command, timeout=timeout)
        else:
            self.client.execute_command(*command)

    def sender(self, queue: str, priority: int) -> Callable[[bytes, float], None] | None:
        """``enqueue(queue, priority, body, timeout=timeout)`` as a function of ``(body,
        timeout)`` for a producer that sends there often, with the ``XADD`` (or
        ``send.lua`` call) packed once; None where :meth:`enqueue` has no short road
        (a sharded queue, ``TASKQ_WAIT_REPLICAS``, no direct connection)."""
        if queue in self.queue_shards or self.wait_replicas or not self.direct.enabled:
            return None
        head = self._xadd_heads.get((queue, priority)) or self._xadd_head(queue, priority)
        if priority != DEFAULT_PRIORITY:  # send.lua: NOSCRIPT handled by _send_packed
            send_packed = self._send_packed

            def send_script(body: bytes, timeout: float) -> None:
                send_packed([b"%b$%d\r\n%b\r\n" % (head, len(body), body)], timeout)

            return send_script
        packed_many = self.direct.packed_many

        def send(body: bytes, timeout: float) -> None:
            reply = packed_many(b"%b$%d\r\n%b\r\n" % (head, len(body), body), 1, timeout)[0]
            if isinstance(reply, Exception):
                raise reply

        return send

    def sender_many(
        self, queue: str, priority: int
    ) -> Callable[[Sequence[bytes], float], None] | None:
        """Like :meth:`sender` for many bodies at once (one round trip), as
        :meth:`enqueue_many` sends them; None where :meth:`sender` is."""
        if queue in self.queue_shards or self.wait_replicas or not self.direct.enabled:
            return None
        head = self._xadd_heads.get((queue, priority)) or self._xadd_head(queue, priority)
        if priority != DEFAULT_PRIORITY:  # send.lua: NOSCRIPT handled by _send_packed
            send_packed = self._send_packed

            def send_scripts(bodies: Sequence[bytes], timeout: float) -> None:
                if bodies:
                    send_packed([b"%b$%d\r\n%b\r\n" % (head, len(b), b) for b in bodies], timeout)

            return send_scripts
        packed_many = self.direct.packed_many

        def send_all(bodies: Sequence[bytes], timeout: float) -> None:
            if bodies:
                packed = b"".join([b"%b$%d\r\n%b\r\n" % (head, len(b), b) for b in bodies])
                _raise_first_error(packed_many(packed, len(bodies), timeout))

        return send_all

    def enqueue_many(
        self, items: Iterable[tuple[str, int, bytes, float | None]], *, timeout: float | None = None
    ) -> None:
        """Send several messages in one round trip, bounded like :meth:`enqueue`."""
        now = time.time()
        if timeout is not None and self.direct.enabled and not self.wait_replicas:
            items = list(items)
            if all(eta is None for _, _, _, eta in items):
                self._enqueue_packed(items, timeout)
                return
        commands = [self._enqueue_command(q, p, body, eta, now) for q, p, body, eta in items]
        if not commands:
            return
        if self.wait_replicas:
            _raise_first_error(self._replicated(commands, timeout))
        elif timeout is None:
            self._pipeline(commands)
        else:
            _raise_first_error(self.direct.pipeline(commands, timeout=timeout))

    def _enqueue_packed(
        self, items: Sequence[tuple[str, int, bytes, float | None]], timeout: float
    ) -> None:
        """:meth:`enqueue_many` of messages to send now: their ``XADD`` commands packed
        together by hand (redis-py's packing costs more than the send)."""
        if not items:
            return
        heads = self._xadd_heads
        pick = self._pick if self.queue_shards else None
        parts = []
        for queue, priority, body, _ in items:
            if pick is not None:
                queue = pick(queue)
            head = heads.get((queue, priority)) or self._xadd_head(queue, priority)
            parts.append(pack_tail(head, body))
        self._send_packed(parts, timeout)

    def _replicated(self, commands: Sequence[tuple[Any, ...]], timeout: float | None) -> list[Any]:
        """Run write ``commands``, then ``WAIT`` for :attr:`wait_replicas` replicas on the
        same connection (``WAIT`` counts the writes of its own connection), in one round
        trip per node; return the commands' replies (errors as replies). Fewer replicas
        within the time left (:data:`WAIT_REPLICAS_TIMEOUT` without ``timeout``) raise
        :class:`ReplicasNotReached`: the messages were written to the master."""
        left = WAIT_REPLICAS_TIMEOUT if timeout is None else timeout
        # WAIT must answer before the socket's deadline: give it most of the time left.
        wait_ms = max(1, int(left * 0.7 * 1000))
        wait = ("WAIT", self.wait_replicas, wait_ms)
        if self.cluster:
            return self._replicated_cluster(commands, wait)
        if timeout is not None:
            replies = self.direct.pipeline([*commands, wait], timeout=timeout)
        else:
            replies = self._send([*commands, wait])
        self._check_replicas(replies[-1])
        return replies[:-1]

    def _check_replicas(self, acked: Any) -> None:
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.wait_replicas:
            exc = ReplicasNotReached(
                f"WAIT: {int(acked)} of {self.wait_replicas} replica(s) acknowledged the "
                "write in time (TASKQ_WAIT_REPLICAS)"
            )
            mark_sent(exc)
            raise exc

    def _replicated_cluster(
        self, commands: Sequence[tuple[Any, ...]], wait: tuple[Any, ...]
    ) -> list[Any]:
        """:meth:`_replicated` on a Redis Cluster: the commands grouped by the node of
        their key, each group and its ``WAIT`` sent to that node's own client. A slot that
        moved meanwhile (``MOVED``/``ASK``) makes the cluster client reload its map and the
        call fail with a connection error, for the caller to retry."""
        by_node: dict[str, list[int]] = {}
        nodes: dict[str, Any] = {}
        for i, command in enumerate(commands):
            node = self.client.get_node_from_key(command[1])
            nodes[node.name] = node
            by_node.setdefault(node.name, []).append(i)
        replies: list[Any] = [None] * len(commands)
        written = False
        for name, indexes in by_node.items():
            pipe = self.client.get_redis_connection(nodes[name]).pipeline(transaction=False)
            for i in indexes:
                pipe.execute_command(*commands[i])
            pipe.execute_command(*wait)
            try:
                got = pipe.execute(raise_on_error=False)
            except CONNECTION_ERRORS as exc:
                mark_sent(exc)
                raise
            for i, reply in zip(indexes, got, strict=False):
                replies[i] = reply
            moved = [r for r in got[:-1] if isinstance(r, _REDIRECTIONS)]
            written = written or len(moved) < len(indexes)
            if moved:
                self.client.execute_command("TYPE", commands[indexes[0]][1])  # reload the map
                error = redis.ConnectionError(f"slot moved while sending: {moved[0]}")
                if written:
                    mark_sent(error)
                raise error
            self._check_replicas(got[-1])
        return replies

    def maybe_sent(self, exc: BaseException) -> bool:
        """True if ``exc`` came after the command was written (see
        :func:`~flask_taskq.broker.direct.maybe_sent`)."""
        return maybe_sent(exc)

    def resend_unsafe(self, exc: BaseException) -> bool:
        """True for a timeout after the command was written: Redis may run it yet."""
        return maybe_sent(exc) and isinstance(exc, redis.TimeoutError)

    def ping(self) -> None:
        """Raise a Redis error when the server cannot be reached."""
        self.client.ping()

    def promote(self, queues: Sequence[str], limit: int = 1000) -> float | None:
        """Move due delayed messages to their streams; return the next due time."""
        pipe = self.client.pipeline(transaction=False)
        now = f"{time.time():.6f}"
        for q in self._physical(queues):
            keys = [self.keys.stream(q, p) for p in range(10)] + [self.keys.delayed(q)]
            self._scripts["promote"](keys=keys, args=[now, limit], client=pipe)
        due = [float(x) for x in self._execute(pipe)]
        waiting = [d for d in due if d >= 0]
        return min(waiting) if waiting else None

    # -- consume ------------------------------------------------------------------------
    def _serving_order(self, queues: Sequence[str]) -> list[str]:
        """Stream keys, highest priority first; queues take turns at each priority so
        that none starves another."""
        names = tuple(queues)
        orders = self._orders.get(names)
        if orders is None:
            physical = tuple(self._physical(names))
            orders = []
            for shift in range(len(physical)):
                rotated = physical[shift:] + physical[:shift]
                order = [self.keys.stream(q, p) for p in PRIORITIES for q in rotated]
                orders.append(order)
            for q in names:
                for shard, name in enumerate(self.shard_names(q)):
                    for p in PRIORITIES:
                        self._stream_of[self.keys.stream(name, p)] = (q, p, shard)
            self._orders[names] = orders
        self._turn += 1
        return orders[self._turn % len(orders)]

    def _delivery(
        self, stream: bytes | str, entry_id: bytes | str, body: bytes, deliveries: int = 1
    ) -> Delivery:
        stream = stream.decode() if isinstance(stream, bytes) else stream
        queue, priority, shard = self._stream_of[stream]
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if shard:
            entry_id = f"{entry_id}{SHARD_SEP}{shard}"
        return Delivery(queue, priority, entry_id, body, int(deliveries))

    def _deliveries(self, flat: list[Any]) -> list[Delivery]:
        """The deliveries of ``fetch.lua``'s reply (stream, entry id, body per message):
        :meth:`_delivery` for a batch, with the stream names looked up as they came."""
        stream_of = self._stream_of
        out: list[Delivery] = []
        append = out.append
        for i in range(0, len(flat), 3):
            stream, entry_id = flat[i], flat[i + 1]
            queue, priority, shard = stream_of[
                stream.decode() if isinstance(stream, bytes) else stream
            ]
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if shard:
                entry_id = f"{entry_id}{SHARD_SEP}{shard}"
            append(Delivery(queue, priority, entry_id, flat[i + 2], 1))
        return out

    def _by_slot(self, keys: list[str]) -> list[list[str]]:
        """``keys`` (stream keys in serving order) split into one list per hash slot, in
        the order their slots first appear: on a Redis Cluster a script may only touch
        keys of one slot. One list on a single Redis."""
        if not self.cluster:
            return [keys]
        cached = self._slot_groups.get(tuple(keys))
        if cached is None:
            by_slot: dict[int, list[str]] = {}
            for key in keys:
                by_slot.setdefault(key_slot(key.encode()), []).append(key)
            cached = self._slot_groups[tuple(keys)] = list(by_slot.values())
        return cached

    def ensure_groups(self, queues: Sequence[str]) -> None:
        """Create the default-priority stream of each of ``queues`` and its consumer group
        (idempotent): the one key an empty queue keeps; the streams of other priorities
        come and go with their messages (``docs/data-model.rst``)."""
        anchors = [self.keys.stream(q, DEFAULT_PRIORITY) for q in self._physical(queues)]
        for keys in self._by_slot(anchors):
            self._scripts["ensure_groups"](keys=keys, args=[GROUP])
        self.client.sadd(self.keys.queues(), *queues)

    def fetch(
        self,
        consumer: str,
        queues: Sequence[str],
        count: int,
        timeout: float,
        then: Piggyback | None = None,
        first: tuple[tuple[Any, ...], Callable[[Any], object]] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``count`` ready messages; ``then``'s commands run right after the
        messages are taken, in the same round trip (see :class:`Piggyback`). ``first``,
        ``(command, callback)``: a command (:meth:`settle_command`) run just before, in
        the same round trip, whose reply (an error too) is handed to ``callback`` before
        any blocking read; not on a Redis Cluster."""
        keys = self._serving_order(queues)
        if self.cluster:
            if first is not None:
                raise ValueError("fetch(first=...) is not supported on a Redis Cluster")
            groups = self._by_slot(keys)
            if len(groups) > 1:
                return self._fetch_slots(consumer, groups, count, timeout, then)
        script = self._scripts["fetch"]
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, GROUP, consumer, count, ANCHOR)
        if first is not None:
            command, callback = first
            before, flat, *sync = self._send(
                [command, evalsha, *(then.sync_commands() if then is not None else ())]
            )
            callback(before)
            _raise_first_error(sync)
        else:
            flat, sync = self._run_with(evalsha, then)
        if isinstance(flat, redis.exceptions.NoScriptError):
            self.client.script_load(script.script)
            flat, sync = self._run_with(evalsha, then)
        if isinstance(flat, Exception):
            raise flat
        live = flat.pop()
        out = self._deliveries(flat)
        if out or timeout <= 0 or not live:
            if then is not None:
                then.apply_sync(sync)
            return out
        reply, sync = self._run_with(_read_new(consumer, count, timeout, live), then)
        if isinstance(reply, redis.ResponseError):
            if _stream_gone(reply):
                return []
            raise reply
        if then is not None:
            then.apply_sync(sync)
        out += self._read_deliveries(reply)
        out.sort(key=lambda d: -d.priority)
        return out

    def _read_deliveries(self, reply: Any) -> list[Delivery]:
        """The deliveries in the reply of :func:`_read_new` (None when nothing came)."""
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3 through redis-py's pipeline
            reply = list(reply.items())
        return [
            self._delivery(stream, entry_id, _body_of(fields))
            for stream, entries in reply
            for entry_id, fields in entries
        ]

    def _fetch_slots(
        self,
        consumer: str,
        groups: list[list[str]],
        count: int,
        timeout: float,
        then: Piggyback | None,
    ) -> list[Delivery]:
        """:meth:`fetch` on a Redis Cluster over queues of several hash slots: one
        ``fetch.lua`` per slot, in one pipeline (redis-py sends one batch per node), each
        asked for an equal share of ``count`` (at least one, so a worker may lease up to
        one message per slot more than ``count``); when none was ready, a blocking read on
        the streams of one slot, a different slot each call (the worker's fetch timeout
        is at most a second, so a message on another slot waits for the next turn)."""
        script = self._scripts["fetch"]
        share = max(1, -(-count // len(groups)))
        commands = [
            ("EVALSHA", script.sha, len(g), *g, GROUP, consumer, share, ANCHOR) for g in groups
        ]
        replies = self._send(commands)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            self.client.script_load(script.script)
            replies = self._send(commands)
        _raise_first_error(replies)
        lives = [flat.pop() for flat in replies]
        out = [
            self._delivery(flat[i], flat[i + 1], flat[i + 2])
            for flat in replies
            for i in range(0, len(flat), 3)
        ]
        if not out and timeout > 0 and lives[0]:
            reply = self._send([_read_new(consumer, count, timeout, lives[0])])[0]
            if isinstance(reply, redis.ResponseError):
                if not _stream_gone(reply):
                    raise reply
            else:
                out += self._read_deliveries(reply)
        if then is not None:
            then.apply_sync(self._pipeline(then.sync_commands()))
        out.sort(key=lambda d: -d.priority)
        return out

    def _send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run raw ``commands`` in one round trip (the direct connection when it can);
        errors come back as replies."""
        return send_commands(self.client, self.direct, commands, use_direct=self.direct.enabled)

    def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """:meth:`_send` that raises the first error."""
        replies = self._send(commands)
        _raise_first_error(replies)
        return replies

    def _run_with(self, command: tuple[Any, ...], then: Piggyback | None) -> tuple[Any, list[Any]]:
        """Run ``command`` and then ``then``'s commands in one round trip; return the
        command's reply (an error is returned, not raised) and the others' replies. On a
        Redis Cluster they may live on other nodes: then ``then``'s commands are sent
        after ``command`` has replied, in a second round trip, so that they still see
        everything done before the messages were taken."""
        if self.cluster:
            reply = self._send([command])[0]
            sync = self._pipeline(then.sync_commands()) if then is not None else []
            return reply, sync
        reply, *replies = self._send([command, *(then.sync_commands() if then is not None else ())])
        _raise_first_error(replies)
        return reply, replies

    def _execute(self, pipe: Any, raise_on_error: bool = True) -> list[Any]:
        """Run a pipeline of script calls; on a Redis Cluster, a master that lost its
        scripts gets them all again (:func:`~flask_taskq.redis_common.reload_scripts`) and
        the call fails once, for the caller to retry."""
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if self.cluster:
            reload_scripts(self.client, list(self._scripts.values()), replies)
        if raise_on_error:
            _raise_first_error(replies)
        return replies

    def _by_stream(self, deliveries: Sequence[Delivery]) -> dict[str, list[Delivery]]:
        grouped: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            grouped[self.keys.stream(self._locate(d)[0], d.priority)].append(d)
        return grouped

    def _eval_each(self, name: str, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run script ``name`` once per ``(key, args)`` in one round trip (loading the
        script first only when Redis does not know it); raise the first error."""
        script = self._scripts[name]
        commands = [("EVALSHA", script.sha, 1, key, *args) for key, args in calls]
        replies = self._send(commands)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            self.client.script_load(script.script)
            replies = self._send(commands)
        _raise_first_error(replies)
        return replies

    def _not_owned(
        self, what: str, consumer: str, groups: Sequence[list[Delivery]], replies: Sequence[Any]
    ) -> list[Delivery]:
        """The deliveries whose ids a script reported as skipped (not owned by
        ``consumer``); logged once per call."""
        skipped: list[Delivery] = []
        for group, ids in zip(groups, replies, strict=True):
            if ids:
                gone = {i.decode() if isinstance(i, bytes) else i for i in ids}
                skipped += [d for d in group if self._locate(d)[1] in gone]
        if skipped:
            logger.warning(
                "Did not %s %d message(s) (%s): %s no longer holds them (its lease lapsed "
                "and another worker took them over, or they were already finished)",
                what,
                len(skipped),
                ", ".join(d.entry_id for d in skipped),
                consumer,
            )
        return skipped

    def _entries_by_stream(
        self, deliveries: Sequence[Delivery]
    ) -> dict[tuple[str, int], tuple[list[Delivery], list[str]]]:
        """``deliveries`` by (physical queue, priority), with their entry ids there: as
        :meth:`_by_stream` and :meth:`_locate`, in one pass (every task's ack takes it)."""
        by_stream: dict[tuple[str, int], tuple[list[Delivery], list[str]]] = {}
        for d in deliveries:
            entry_id = d.entry_id
            queue = d.queue
            if SHARD_SEP in entry_id:
                queue, entry_id = self._locate(d)
            group = by_stream.get((queue, d.priority))
            if group is None:
                by_stream[(queue, d.priority)] = ([d], [entry_id])
            else:
                group[0].append(d)
                group[1].append(entry_id)
        return by_stream

    def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Finish the deliveries ``consumer`` still owns (``ack.lua``: ownership check,
        XACK, XDEL; one round trip for the batch); return those it skipped."""
        if not deliveries:
            return []
        by_stream = self._entries_by_stream(deliveries)
        stream = self.keys.stream
        calls = [
            (stream(queue, priority), [GROUP, consumer, *ids])
            for (queue, priority), (_, ids) in by_stream.items()
        ]
        if self.wait_replicas:
            replies = self._acks_replicated(calls)
        else:
            replies = self._eval_each("ack", calls)
        return self._not_owned("acknowledge", consumer, [g for g, _ in by_stream.values()], replies)

    def can_settle(self, result_url: str | None) -> bool:
        """Whether :meth:`settle_command` can finish batches for a worker whose results
        go to ``result_url`` (None: results are not kept): the same single Redis (not a
        cluster, whose result keys and streams lie in other slots), without
        ``TASKQ_WAIT_REPLICAS`` (whose ``WAIT`` follows the acks of :meth:`ack`)."""
        same = result_url is None or result_url == self.url
        return same and not self.cluster and not self.wait_replicas

    def carries(self, queue: str, priority: int) -> bool:
        """Whether :meth:`settle_command` can send a message to ``queue`` at ``priority``
        as :meth:`enqueue` would: a plain ``XADD`` (the default priority, a queue that is
        not sharded)."""
        return priority == DEFAULT_PRIORITY and queue not in self.queue_shards

    def settle_command(
        self,
        consumer: str,
        deliveries: Sequence[Delivery],
        results: Sequence[tuple[str, bytes, int]],
        ttl: int,
        sends: Sequence[tuple[str, int, bytes]] = (),
    ) -> tuple[tuple[Any, ...], Callable[[Any], list[Delivery]]]:
        """One ``settle.lua`` call that sends ``sends`` (``(queue, priority, body)``, each
        one :meth:`carries`), stores ``results`` (``(task id, document, kind)``, as the
        Redis result backend's ``store_many``), then finishes the deliveries ``consumer``
        still owns (as :meth:`ack`): one command for a batch instead of two or three
        round trips. Returns the command and a function of its reply that raises an
        error reply and returns the deliveries it skipped. Only where :meth:`can_settle`."""
        by_stream = self._entries_by_stream(deliveries)
        stream = self.keys.stream
        result = self.keys.result
        keys: list[object] = [result(task_id) for task_id, _, _ in results]
        keys += [stream(queue, priority) for queue, priority, _ in sends]
        args: list[object] = [len(results), ttl, GROUP, consumer, len(sends)]
        for _, data, kind in results:
            args += (data, int(kind))
        args += [body for _, _, body in sends]
        for (queue, priority), (_, ids) in by_stream.items():
            keys.append(stream(queue, priority))
            args.append(len(ids))
            args += ids
        command = ("EVALSHA", self._scripts["settle"].sha, len(keys), *keys, *args)

        def skipped(reply: Any) -> list[Delivery]:
            if isinstance(reply, Exception):
                raise reply
            groups = [g for g, _ in by_stream.values()]
            return self._not_owned("acknowledge", consumer, groups, reply[1:])

        return command, skipped

    def ack_storing(
        self,
        consumer: str,
        deliveries: Sequence[Delivery],
        results: Sequence[tuple[str, bytes, int]],
        ttl: int,
        sends: Sequence[tuple[str, int, bytes]] = (),
    ) -> list[Delivery]:
        """Send :meth:`settle_command` (loading the script when Redis does not know it);
        return the deliveries it skipped."""
        command, skipped = self.settle_command(consumer, deliveries, results, ttl, sends)
        reply = self._send([command])[0]
        if isinstance(reply, redis.exceptions.NoScriptError):
            self.client.script_load(self._scripts["settle"].script)
            reply = self._send([command])[0]
        return skipped(reply)

    def _acks_replicated(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """``ack.lua`` for each call, then ``WAIT`` :attr:`wait_replicas` on the same
        connection (one per node on a cluster), in one round trip: when it returns, the
        acks and every write the master took before them (the batch's results and
        retries, when they live on that Redis) are on the replicas. Fewer replicas within
        :data:`ACK_WAIT_TIMEOUT` are logged once until WAIT succeeds again; the acks
        stand (they are on the master)."""
        script = self._scripts["ack"]
        wait = ("WAIT", self.wait_replicas, int(ACK_WAIT_TIMEOUT * 1000))
        by_node: dict[str, list[int]] = {"": list(range(len(calls)))}
        if self.cluster:
            by_node = {}
            for i, (stream, _) in enumerate(calls):
                by_node.setdefault(self.client.get_node_from_key(stream).name, []).append(i)
        replies: list[Any] = [None] * len(calls)
        acked = self.wait_replicas
        for name, indexes in by_node.items():
            commands = [("EVALSHA", script.sha, 1, calls[i][0], *calls[i][1]) for i in indexes]
            got = self._send_to(name, [*commands, wait])
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in got):
                self._send_to(name, [("SCRIPT", "LOAD", script.script)])
                got = self._send_to(name, [*commands, wait])
            if any(isinstance(r, _REDIRECTIONS) for r in got):
                self.client.execute_command("TYPE", calls[indexes[0]][0])  # reload the map
                raise redis.ConnectionError("slot moved while acknowledging: retried")
            _raise_first_error(got)
            for i, reply in zip(indexes, got, strict=False):
                replies[i] = reply
            acked = min(acked, int(got[-1]))
        self._note_ack_replicas(acked)
        return replies

    def _send_to(self, node: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """:meth:`_send` on one connection to cluster node ``node`` ("": not a cluster)."""
        if not node:
            return self._send(commands)
        client = self.client.get_redis_connection(self.client.get_node(node_name=node))
        pipe = client.pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    def _note_ack_replicas(self, acked: int) -> None:
        short = acked < self.wait_replicas
        if short and not self._acks_short:
            logger.warning(
                "WAIT after acks: %d of %d replica(s) acknowledged within %.1fs "
                "(TASKQ_WAIT_REPLICAS); the acks stand on the master, and a failover "
                "before the replicas catch up may run those tasks again. Said once until "
                "the replicas answer.",
                acked,
                self.wait_replicas,
                ACK_WAIT_TIMEOUT,
            )
        elif not short and self._acks_short:
            logger.info("WAIT after acks: %d replica(s) acknowledge again", acked)
        self._acks_short = short

    def requeue(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Give back the deliveries ``consumer`` still owns as new entries; return those
        it skipped."""
        if not deliveries:
            return []
        groups = list(self._by_stream(deliveries).items())
        calls = []
        for stream, group in groups:
            args: list[object] = [GROUP, consumer]
            for d in group:
                args += [self._locate(d)[1], d.body]
            calls.append((stream, args))
        replies = self._eval_each("requeue", calls)
        return self._not_owned("requeue", consumer, [g for _, g in groups], replies)

    def renew(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        if not deliveries:
            return []
        pipe = self.client.pipeline(transaction=False)
        groups = list(self._by_stream(deliveries).items())
        for stream, group in groups:
            self._scripts["renew"](
                keys=[stream],
                args=[GROUP, consumer, *[self._locate(d)[1] for d in group]],
                client=pipe,
            )
        lost: list[Delivery] = []
        for (_, group), lost_ids in zip(groups, self._execute(pipe), strict=True):
            gone = {i.decode() for i in lost_ids}
            lost += [d for d in group if self._locate(d)[1] in gone]
        return lost

    def reclaim(
        self, consumer: str, queues: Sequence[str], min_idle: float, count: int
    ) -> list[Delivery]:
        """Take over up to ``count`` entries of ``queues`` whose lease went unrenewed for
        ``min_idle`` seconds; at most every :data:`PRUNE_EVERY` seconds, also delete the
        consumers that hold nothing and have not read for ``idle_consumer_ttl`` (a
        killed worker's), in the same script call (``reclaim.lua``)."""
        groups = self._by_slot(self._serving_order(queues))
        share = max(1, -(-count // len(groups)))
        prune = 0
        now = time.monotonic()
        if self.idle_consumer_ttl > 0 and now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            prune = max(1, int(self.idle_consumer_ttl * 1000))
        out: list[Delivery] = []
        pruned = 0
        for keys in groups:  # one per queue's hash slot on a Redis Cluster
            flat = self._scripts["reclaim"](
                keys=keys, args=[GROUP, consumer, int(min_idle * 1000), share, prune]
            )
            pruned += int(flat.pop())
            out += [self._delivery(*flat[i : i + 4]) for i in range(0, len(flat), 4)]
        if pruned:
            logger.info(
                "Deleted %d consumer(s) holding nothing and idle for over %gs (stopped "
                "workers) from the groups of %s",
                pruned,
                self.idle_consumer_ttl,
                ", ".join(queues),
            )
        return out

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
        """Enqueue unless another task holds ``key``; return the owner's task id.
        ``timeout`` bounds the call as in :meth:`enqueue`."""
        if self.cluster:
            return self._enqueue_unique_cluster(queue, priority, body, eta, key, task_id, ttl)
        script = self._scripts["enqueue_unique"]
        queue = self._pick(queue)
        keys = [
            self.keys.unique(key),
            self.keys.stream(queue, priority),
            self.keys.delayed(queue),
            self.keys.stream(queue, DEFAULT_PRIORITY),
        ]
        args: list[Any] = [task_id, ttl, body, f"{eta or 0:.6f}", f"{time.time():.6f}", priority]
        if self.wait_replicas:
            owner = self._replicated([("EVAL", script.script, len(keys), *keys, *args)], timeout)[0]
            if isinstance(owner, Exception):
                raise owner
        elif timeout is None:
            owner = script(keys=keys, args=args)
        else:
            try:
                owner = self.direct.command(
                    "EVALSHA", script.sha, len(keys), *keys, *args, timeout=timeout
                )
            except redis.exceptions.NoScriptError:
                owner = self.direct.command(
                    "EVAL", script.script, len(keys), *keys, *args, timeout=timeout
                )
        return owner.decode() if isinstance(owner, bytes) else owner

    def _enqueue_unique_cluster(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None,
        key: str,
        task_id: str,
        ttl: int,
    ) -> str:
        """:meth:`enqueue_unique` on a Redis Cluster, where the lock and the queue live in
        different slots: take the lock (``SET NX GET``), then send; a send that fails
        gives the lock back. Not atomic: a producer that dies between the two steps
        leaves the lock to expire after ``ttl`` seconds (as a lost task's lock does).
        ``claim_unique.lua`` touches the lock alone."""
        owner = self._lazy_script("claim_unique")(keys=[self.keys.unique(key)], args=[task_id, ttl])
        if owner is not None:
            return owner.decode() if isinstance(owner, bytes) else str(owner)
        command = self._enqueue_command(queue, priority, body, eta, time.time())
        try:
            if self.wait_replicas:
                _raise_first_error(self._replicated([command], None))
            else:
                self.client.execute_command(*command)
        except BaseException:
            try:
                self.release_unique(key, task_id)
            except ERRORS:
                pass  # the lock expires after ttl
            raise
        return task_id

    def note_start(self, delivery: Delivery) -> int:
        """Count a start of a redelivered message; return its count of such starts."""
        return int(
            self._scripts["note_start"](
                keys=[self.keys.starts(delivery.queue, delivery.entry_id)], args=[86400]
            )
        )

    def release_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` still holds it."""
        self._scripts["release_unique"](keys=[self.keys.unique(key)], args=[task_id])

    def reschedule(
        self, consumer: str, items: Sequence[tuple[Delivery, bytes, float]]
    ) -> list[Delivery]:
        """Replace each held delivery that ``consumer`` still owns by its next attempt
        (``reschedule.lua``); return those it skipped (taken over by another worker)."""
        if not items:
            return []
        pipe = self.client.pipeline(transaction=False)
        now = f"{time.time():.6f}"
        for delivery, body, due in items:
            shard, entry_id = self._locate(delivery)
            self._scripts["reschedule"](
                keys=[self.keys.stream(shard, delivery.priority), self.keys.delayed(shard)],
                args=[
                    GROUP,
                    entry_id,
                    body,
                    f"{due:.6f}",
                    now,
                    delivery.priority,
                    consumer,
                ],
                client=pipe,
            )
        replies = self._execute(pipe)
        groups = [[d] for d, _, _ in items]
        skipped_ids = [
            [d.entry_id] if not done else [] for (d, _, _), done in zip(items, replies, strict=True)
        ]
        return self._not_owned("reschedule", consumer, groups, skipped_ids)

    def dead_letter(
        self,
        consumer: str,
        delivery: Delivery,
        reason: str,
        task: str,
        task_id: str,
        traceback: str = "",
    ) -> int:
        """Move a delivery ``consumer`` still owns to the dead-letter store (one that
        another worker took over is left to it), then trim the store's oldest entries
        beyond :data:`MAX_DEAD_LETTERS` entries or :attr:`dead_letter_max_bytes` bytes;
        return how many were trimmed."""
        shard, entry_id = self._locate(delivery)
        moved, trimmed = self._scripts["dead_letter"](
            keys=[
                self.keys.stream(shard, delivery.priority),
                self.keys.dead(shard),
                self.keys.dead_bytes(shard),
            ],
            args=[
                GROUP,
                entry_id,
                delivery.body,
                reason,
                task,
                task_id,
                delivery.queue,
                f"{time.time():.3f}",
                MAX_DEAD_LETTERS,
                consumer,
                traceback,
                self.dead_letter_max_bytes,
            ],
        )
        if not moved:
            self._not_owned("dead-letter", consumer, [[delivery]], [[delivery.entry_id]])
        return int(trimmed)

    # -- consumers ----------------------------------------------------------------------
    def _lazy_script(self, name: str) -> redis.commands.core.Script:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = load_script(self.client, name)
        return script

    def forget_consumer(self, consumer: str, queues: Sequence[str]) -> None:
        """Delete ``consumer`` from the group of every stream of ``queues`` where it holds
        no entry (``forget_consumer.lua``): an entry it still holds, or that another
        process of the same name holds, stays pending, for a worker to reclaim."""
        script = self._lazy_script("forget_consumer")
        pipe = self.client.pipeline(transaction=False)
        for q in self._physical(queues):
            script(keys=self.keys.streams(q), args=[GROUP, consumer], client=pipe)
        self._execute(pipe, raise_on_error=False)

    def renew_consumers(self, consumers: Sequence[str], queues: Sequence[str]) -> int:
        """Renew every lease that each of ``consumers`` holds in the streams of ``queues``
        (``renew_consumer.lua``), in one round trip; return how many were renewed."""
        if not consumers or not queues:
            return 0
        script = self._lazy_script("renew_consumer")
        pipe = self.client.pipeline(transaction=False)
        for consumer in consumers:
            for q in self._physical(queues):
                script(keys=self.keys.streams(q), args=[GROUP, consumer], client=pipe)
        replies = self._execute(pipe)
        return sum(int(r) for r in replies)

    # -- inspection and maintenance -------------------------------------------------------
    def queue_length(self, queue: str) -> int:
        # Acked entries are deleted, so a stream holds exactly its ready and leased entries.
        pipe = self.client.pipeline(transaction=False)
        for name in self.shard_names(queue):
            for p in PRIORITIES:
                stream = self.keys.stream(name, p)
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
        replies = pipe.execute(raise_on_error=False)
        total = 0
        for length, pending in zip(replies[::2], replies[1::2], strict=True):
            leased = 0 if isinstance(pending, Exception) else pending["pending"]
            total += max(0, length - leased)
        return total

    def known_queues(self) -> set[str]:
        """The queues a worker ever consumed (:meth:`ensure_groups` records them)."""
        return {q.decode() for q in self.client.smembers(self.keys.queues())}

    def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats]:
        """Ready, leased, delayed and dead messages of each of ``queues`` and when its
        first delayed message is due, in one round trip; a sharded queue's figures are
        the sums over its shards (:meth:`shard_stats` has each)."""
        names = list(dict.fromkeys(queues))
        if not self.queue_shards:
            return self._queue_stats(names)
        per_shard = self._queue_stats(self._physical(names))
        return {q: _sum_stats([per_shard[s] for s in self.shard_names(q)]) for q in names}

    def shard_stats(self, queue: str) -> dict[str, QueueStats]:
        """:meth:`queue_stats` of each shard of ``queue`` (``{queue: ...}`` alone when it is
        not sharded)."""
        return self._queue_stats(self.shard_names(queue))

    def _queue_stats(self, names: list[str]) -> dict[str, QueueStats]:
        if not names:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for queue in names:
            for p in PRIORITIES:
                stream = self.keys.stream(queue, p)
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
            pipe.zcard(self.keys.delayed(queue))
            pipe.zrange(self.keys.delayed(queue), 0, 0, withscores=True)
            pipe.xlen(self.keys.dead(queue))
        replies = pipe.execute(raise_on_error=False)
        _raise_first_error([r for r in replies if not _is_nogroup(r)])
        per_queue = 2 * len(PRIORITIES) + 3
        stats = {}
        for i, queue in enumerate(names):
            chunk = replies[i * per_queue : (i + 1) * per_queue]
            ready = leased = 0
            for length, pending in zip(chunk[:-3:2], chunk[1:-3:2], strict=True):
                # Acked entries are deleted: a stream holds its ready and leased entries.
                held = 0 if _is_nogroup(pending) else min(int(pending["pending"]), length)
                ready += length - held
                leased += held
            delayed, first, dead = chunk[-3:]
            stats[queue] = QueueStats(
                ready=ready,
                leased=leased,
                delayed=int(delayed),
                dead=int(dead),
                next_due=float(first[0][1]) if first else None,
            )
        return stats

    # -- dead letters ---------------------------------------------------------------------
    #: Dead letters ``requeue_dead`` moves in one atomic script call.
    REQUEUE_BATCH = 500
    #: A stream entry id (``<milliseconds>-<sequence>``): how dead letters are named.
    ENTRY_ID = re.compile(r"\A\d+-\d+\Z")
    #: Text fields of a dead-letter entry (``body`` stays bytes).
    DEAD_TEXT_FIELDS = ("reason", "task", "id", "queue", "time", "worker", "traceback")

    @staticmethod
    def dead_letter_priority(body: bytes, serializer: Serializer) -> int:
        """The priority of a dead letter's message ``body``: where to requeue it;
        :data:`~flask_taskq.keys.DEFAULT_PRIORITY` when the body cannot be decoded."""
        try:
            priority = Message.from_bytes(body, serializer).priority
        except DecodeError:
            return DEFAULT_PRIORITY
        return priority if 0 <= priority <= 9 else DEFAULT_PRIORITY

    @staticmethod
    def _dead_row(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, object]:
        row: dict[str, object] = {k.decode(): v for k, v in fields.items()}
        for k in RedisBroker.DEAD_TEXT_FIELDS:
            value = row.get(k, b"")
            row[k] = value.decode(errors="replace") if isinstance(value, bytes) else value
        row.setdefault("body", b"")
        row["entry_id"] = entry_id.decode()
        return row

    def dead_letters(
        self, queue: str, count: int = 100, before: str | None = None
    ) -> list[dict[str, object]]:
        """The newest ``count`` dead letters of ``queue``, newest first; with ``before``
        (an entry id), those older than it, to page through the store.

        Each is a dict of the entry's fields: ``body`` (bytes, the message as it was
        delivered), ``reason``, ``task``, ``id`` (task id), ``queue``, ``time`` (unix time),
        ``worker``, ``traceback`` (text), plus ``entry_id`` (the stream entry id).
        """
        raw, _, after = (before or "").partition(SHARD_SEP)
        if before is not None and not (self.ENTRY_ID.match(raw) and after in ("", *_DIGITS)):
            raise ValueError(f"not a dead-letter entry id: {before!r}")
        before_shard = int(after or 0)
        rows: list[dict[str, object]] = []
        for shard, name in enumerate(self.shard_names(queue)):
            # Shards' ids can be equal (each stream numbers its own): ties order by shard.
            top = "+" if before is None else raw if shard < before_shard else f"({raw}"
            entries = self.client.xrevrange(self.keys.dead(name), max=top, min="-", count=count)
            for entry_id, fields in entries:
                row = self._dead_row(entry_id, fields)
                if shard:
                    row["entry_id"] = f"{row['entry_id']}{SHARD_SEP}{shard}"
                rows.append(row)
        if len(self.shard_names(queue)) > 1:  # newest first over the shards
            rows.sort(key=lambda r: _id_order(str(r["entry_id"])), reverse=True)
        return rows[:count]

    def dead_letter_get(self, queue: str, entry_id: str) -> dict[str, object] | None:
        """The dead letter ``entry_id`` of ``queue`` (as in :meth:`dead_letters`), or None."""
        [(name, [raw])] = self._split_ids(queue, [entry_id]).items()
        if not self.ENTRY_ID.match(raw) or name not in self.shard_names(queue):
            return None
        entries = self.client.xrange(self.keys.dead(name), raw, raw, count=1)
        if not entries:
            return None
        row = self._dead_row(*entries[0])
        row["entry_id"] = entry_id
        return row

    def dead_letter_count(self, queue: str) -> int:
        """How many dead letters ``queue`` holds."""
        return sum(int(self.client.xlen(self.keys.dead(n))) for n in self.shard_names(queue))

    def dead_letter_queues(self) -> list[str]:
        """The known queues (those a worker ever consumed) that hold dead letters."""
        names = sorted(n.decode() for n in self.client.smembers(self.keys.queues()))
        if not names:
            return []
        return [n for n in names if self.dead_letter_count(n)]

    def requeue_dead(
        self, queue: str, entry_ids: Sequence[str], serializer: Serializer | None = None
    ) -> int:
        """Send dead letters of ``queue`` back to it and return how many moved.

        Each body goes unchanged, as a new message (so it keeps its task id and its
        delivery count starts anew), to the stream of the priority read from it with
        ``serializer`` (JSON by default; priority 5 when it cannot be read), and leaves the
        dead-letter store in the same step (``requeue_dead.lua``, atomic per batch of
        :attr:`REQUEUE_BATCH`). Unknown or malformed ids are skipped.
        """
        moved = 0
        for name, ids in self._split_ids(queue, list(dict.fromkeys(entry_ids))).items():
            if name in self.shard_names(queue):
                moved += self._requeue_dead(name, ids, serializer)
        return moved

    def _requeue_dead(self, queue: str, entry_ids: list[str], serializer: Serializer | None) -> int:
        ids = [i for i in entry_ids if self.ENTRY_ID.match(i)]
        if not ids:
            return 0
        serializer = serializer or JSONSerializer()
        script = self._scripts.get("requeue_dead")
        if script is None:
            script = self._scripts["requeue_dead"] = load_script(self.client, "requeue_dead")
        dead = self.keys.dead(queue)
        keys = (
            [dead] + [self.keys.stream(queue, p) for p in range(10)] + [self.keys.dead_bytes(queue)]
        )
        moved = 0
        for start in range(0, len(ids), self.REQUEUE_BATCH):
            batch = ids[start : start + self.REQUEUE_BATCH]
            pipe = self.client.pipeline(transaction=False)
            for entry_id in batch:
                pipe.xrange(dead, entry_id, entry_id, count=1)
            args: list[Any] = []
            for entry_id, found in zip(batch, pipe.execute(), strict=True):
                if found:
                    body = found[0][1].get(b"body", b"")
                    args += [entry_id, self.dead_letter_priority(body, serializer)]
            if args:
                moved += int(script(keys=keys, args=args))
        return moved

    def purge_dead(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many there were."""
        total = 0
        for name in self.shard_names(queue):
            pipe = self.client.pipeline(transaction=True)
            pipe.xlen(self.keys.dead(name))
            pipe.delete(self.keys.dead(name), self.keys.dead_bytes(name))
            length, _ = pipe.execute()
            total += int(length)
        return total

    def delete_dead(self, queue: str, entry_ids: Sequence[str]) -> int:
        """Delete dead letters of ``queue`` (keeping the store's byte count right); return
        how many were deleted. Unknown or malformed ids are skipped."""
        script = self._scripts.get("delete_dead")
        if script is None:
            script = self._scripts["delete_dead"] = load_script(self.client, "delete_dead")
        deleted = 0
        for name, raw in self._split_ids(queue, list(dict.fromkeys(entry_ids))).items():
            ids = [i for i in raw if self.ENTRY_ID.match(i)]
            if ids and name in self.shard_names(queue):
                keys = [self.keys.dead(name), self.keys.dead_bytes(name)]
                deleted += int(script(keys=keys, args=ids))
        return deleted

    def purge(self, queue: str) -> int:
        total = 0
        for name in self.shard_names(queue):
            keys = [self.keys.stream(name, p) for p in PRIORITIES] + [self.keys.delayed(name)]
            total += int(self._scripts["purge"](keys=keys, args=[GROUP]))
        return total

    def set_reply_timeout(self, seconds: float) -> None:
        """Wait at most ``seconds`` for a reply on connections the pool opens from now
        (on a Redis Cluster, the pools of every node, and of nodes found later)."""
        if self.cluster:
            self.client.get_connection_kwargs()["socket_timeout"] = seconds
            for node in self.client.get_nodes():
                if node.redis_connection is not None:
                    pool = node.redis_connection.connection_pool
                    pool.connection_kwargs["socket_timeout"] = seconds
            return
        self.client.connection_pool.connection_kwargs["socket_timeout"] = seconds

    def after_fork(self) -> None:
        """Forget the parent's pooled connections (their sockets stay open for it)."""
        pools = (
            [
                n.redis_connection.connection_pool
                for n in self.client.get_nodes()
                if n.redis_connection
            ]
            if self.cluster
            else [self.client.connection_pool]
        )
        for pool in pools:
            try:
                pool.reset()
            except Exception:  # a pool that cannot reset: its connections check the pid
                pass

    def store(self) -> RedisStore:
        """The Redis store on this broker's client (see :meth:`Broker.store`)."""
        from ..store.redis import RedisStore

        return RedisStore(self.client, self.keys)

    def close(self) -> None:
        """Close every connection this broker opened: the client's pool and the direct
        per-thread sockets."""
        self.direct.close()
        self.client.close()


def _read_new(consumer: str, count: int, timeout: float, keys: Sequence[str]) -> tuple[Any, ...]:
    """The blocking read of up to ``count`` new entries of ``keys`` for ``consumer``,
    waiting at most ``timeout`` (capped at ``MAX_BLOCK``)."""
    block = max(1, int(min(timeout, MAX_BLOCK) * 1000))
    return (
        "XREADGROUP",
        "GROUP",
        GROUP,
        consumer,
        "COUNT",
        count,
        "BLOCK",
        block,
        "STREAMS",
        *keys,
        *([">"] * len(keys)),
    )


def _body_of(fields: Any) -> bytes:
    """The message in a stream entry's fields: the value of the field named ``m``, or
    ``b""`` when there is none (the consumer dead-letters it as undecodable). redis-py's
    pipeline gives a dict, a raw reply is ``[field, value, ...]``."""
    if isinstance(fields, dict):
        return bytes(fields.get(b"m", b""))
    if fields:
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == b"m":
                return bytes(fields[i + 1])
    return b""


def _sum_stats(parts: Sequence[QueueStats]) -> QueueStats:
    """One queue's figures from those of its shards."""
    dues = [p.next_due for p in parts if p.next_due is not None]
    return QueueStats(
        ready=sum(p.ready for p in parts),
        leased=sum(p.leased for p in parts),
        delayed=sum(p.delayed for p in parts),
        dead=sum(p.dead for p in parts),
        next_due=min(dues) if dues else None,
    )


def _id_order(entry_id: str) -> tuple[int, int, int]:
    """Sort key of a dead letter's id (``ms-seq``, maybe followed by ``~shard``)."""
    raw, _, shard = entry_id.partition(SHARD_SEP)
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0), int(shard or 0)


#: Shard numbers as text, to check the ``~k`` of an entry id.
_DIGITS = tuple(str(k) for k in range(1, 1000))


def _stream_gone(reply: redis.ResponseError) -> bool:
    """True for the error of a blocking read whose stream (or its group) is no more: Redis
    lost its data, or the stream was deleted once empty (other priorities than the
    default one)."""
    text = str(reply)
    return "NOGROUP" in text or "UNBLOCKED" in text


def _no_script(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError)


def _is_nogroup(reply: Any) -> bool:
    """True for the error of XPENDING on a stream that has no consumer group yet."""
    return isinstance(reply, redis.ResponseError) and "NOGROUP" in str(reply)


def _raise_first_error(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
