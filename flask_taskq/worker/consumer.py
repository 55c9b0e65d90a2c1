"""The consumer: one per worker process. It leases messages from the broker into a local,
priority-ordered buffer, hands them to executor threads, batches acknowledgements and
results, and keeps its leases alive from a background thread."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from .. import broker as transport
from .. import signals, states
from ..backend import ResultBackend
from ..backend.base import STARTED
from ..broker import Broker, Delivery
from ..broker.base import Settler
from ..broker.blame import broker_server, server_of
from ..broker.memory import ANY_QUEUE
from ..events import flush_all as flush_events
from ..exceptions import (
    DecodeError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from ..message import Message
from ..monitor import HEARTBEAT_INTERVAL, Monitor, failure_key, rss_bytes, runtime_bucket
from ..ratelimit import RateLimiter
from ..result import exception_meta
from ..signing import unverified_reason
from ..task import UNIQUE_HEADER, autoretry_at
from . import replay
from .execute import extended_fields
from .guard import Guard, Running, TaskTerminated

if TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_taskq.worker")

#: Errors that mean "connection lost": wait and reconnect, never crash.
CONNECTION_ERRORS = transport.CONNECTION_ERRORS
#: Every error that is the transport's fault (lost connection, OOM, READONLY, other error
#: replies): the step is retried with backoff, the message is kept.
REDIS_ERRORS = transport.ERRORS
#: Longest wait between two attempts at a step that Redis refused (seconds).
MAX_BACKOFF = 5.0
#: Aim for a fetched batch to hold about this much work (seconds), so that slow tasks are
#: not hoarded by one worker while another idles; fast tasks get big batches.
BATCH_WORK = 0.05
#: Longest a finished task waits before its ack and result are written (seconds).
MAX_ACK_DELAY = 0.01
MAX_ACK_BATCH = 128

#: A finished delivery awaiting its batch: (delivery, task id, result document, ready?,
#: next attempt (body, due) or None).
_Done = tuple[Delivery, str, bytes | None, bool, tuple[bytes, float] | None]
#: A delivery as the held and settling sets know it: (queue, priority, entry id).
_Key = tuple[str, int, str]
#: A fetch round trip slower than this (seconds) means a slow link to the broker: the
#: consumer then fetches ahead of its executors and leaves batches to the keeper thread,
#: so that round trips overlap the work instead of adding to it.
SLOW_LINK = 0.002
#: Prefetch when TASKQ_WORKER_PREFETCH is not set: this many messages at most, and on a
#: slow link up to SLOW_LINK_PREFETCH (still about BATCH_WORK of work plus two round trips).
DEFAULT_PREFETCH = 64
SLOW_LINK_PREFETCH = 1024
#: Longest a STARTED state waits before the keeper writes it (seconds): the keeper looks
#: this often once a task tracked its start, rather than being woken by every start.
STARTED_DELAY = 0.05


class Outage:
    """Logs a failing step once when it starts failing and once when it works again,
    however often it is retried in between (thread-safe). The lines name the server the
    error came from (RabbitMQ, Redis...; ``server`` when the error does not say)."""

    def __init__(self, what: str, server: str = "Redis") -> None:
        self.what = what
        self.server = server
        self.since: float | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, then: str = "retrying with backoff") -> None:
        """Note a failure; log it if it is the first of an outage."""
        with self._lock:
            first, self.since = self.since is None, self.since or time.monotonic()
        if first:
            trouble = "unreachable" if isinstance(exc, CONNECTION_ERRORS) else "refused"
            self.server = server_of(exc, self.server)
            logger.warning(
                "%s %s: could not %s (%s: %s); %s",
                self.server,
                trouble,
                self.what,
                type(exc).__name__,
                exc,
                then,
            )

    def ok(self) -> None:
        """Note a success; log it if it ends an outage."""
        if self.since is None:
            return
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            logger.warning(
                "%s answers again: could %s after %.1fs",
                self.server,
                self.what,
                time.monotonic() - since,
            )


class Consumer:
    """Leases, buffers, acknowledges. Thread-safe: several executor threads may share it."""

    def __init__(
        self,
        state: AppState,
        broker: Broker,
        backend: ResultBackend | None,
        name: str,
        queues: Sequence[str],
        prefetch: int | None,
        threads: int = 1,
    ) -> None:
        config = state.config
        self.state = state
        self.broker = broker
        self.backend = backend
        self.name = name
        self.queues = list(queues)
        #: The most messages leased ahead; None (TASKQ_WORKER_PREFETCH unset): automatic.
        self.prefetch = max(1, prefetch or DEFAULT_PREFETCH)
        self._auto_prefetch = not prefetch
        self.threads = threads
        self.visibility_timeout = float(config["TASKQ_VISIBILITY_TIMEOUT"])
        self.max_deliveries = int(config["TASKQ_MAX_DELIVERIES"])
        self.result_ttl = state.result_expires
        #: The broker, where it can settle a batch (sends, results, acks) in one script
        #: call, alone or at the head of a fetch (its results live on the broker's
        #: Redis, or none are kept; see ``RedisBroker.settle_command``); else None:
        #: results and acks go out in calls of their own.
        self._settler: Settler | None = None
        can_settle = getattr(broker, "can_settle", None)
        result_url = None if backend is None else getattr(backend, "url", "")
        if can_settle is not None and can_settle(result_url):
            self._settler = cast("Settler", broker)
        self.result_extended = bool(config["TASKQ_RESULT_EXTENDED"])
        self.serializer = state.serializer
        self.tasks = state.taskqueue.tasks
        self.stopping = threading.Event()
        self._wake = threading.Event()  # wakes the keeper thread
        self._closed = threading.Event()
        self.guard = Guard()
        self.revocations = state.new_revocations(broker)
        self.hard_limits = False  # kill the process on time_limit (prefork children)
        self.store = broker.store()
        self.limiter = RateLimiter(self.store.rate_limits, errors=self.store.errors)
        self.monitor = Monitor(self.store.monitor)
        #: Called (keeper thread) when run-time rate limits appear or all go away; the
        #: pipeline re-plans then (its rate-limit hook is left out while none apply).
        self.on_overrides_changed: Callable[[], None] = _nothing
        #: How many more ``async def`` tasks could start now (set by :mod:`.aio`).
        self.async_room: Callable[[], int] = _none_free
        #: Publishes a task event (``TASKQ_EVENTS``; set by the events hook), for the
        #: outcomes decided outside the pipeline: dead letters, a hard time limit.
        self.emit: Callable[..., None] | None = None
        #: True while the caller has more finished tasks to record at once (the async
        #: settler): their acks and results then go out in one batch.
        self.more_coming: Callable[[], bool] = _no
        self.identity: dict[str, object] = {}  # what the heartbeat says about the worker
        #: What the next heartbeat publishes; run times in ms are floats (Counter adds
        #: them as they are, though typeshed types its values as int).
        self.counters: Counter[tuple[str, ...]] = Counter()
        self.totals: Counter[str] = Counter()
        self.paused: set[str] = set()
        self.started = time.time()
        self._buffer: list[tuple[int, int, Delivery, Message]] = []
        self._seq = itertools.count()
        self._held: dict[tuple[str, int, str], Delivery] = {}
        self._done: list[_Done] = []
        #: Messages the finished tasks of ``_done`` sent (chain links) that go out with
        #: their acknowledgements: (queue, priority, body). See ``deferring_sends``.
        self._sends: list[tuple[str, int, bytes]] = []
        self._done_since = 0.0
        #: STARTED states not written yet: task id -> (task name, unix start time). A task
        #: that finishes before the next batch leaves it, so only its final state goes.
        self._started: dict[str, tuple[str, float]] = {}
        self._tracking = False  # a task noted its start: the keeper looks every STARTED_DELAY
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # batches reach Redis in the order they were made
        self._fetch_lock = threading.Lock()
        self._refill_lock = threading.Lock()  # one fetch at a time (executor or fetcher)
        self._rtt = 0.0  # smoothed duration of fetches that found a full batch waiting
        self.slow_link = False  # self._rtt > SLOW_LINK
        #: Fetch ahead of the executors and leave batches to the keeper: on a slow link,
        #: and while a backlog waits (the last fetch came back full), so that Redis works
        #: on the next batch while this process runs the current one.
        self.ahead = False
        self._fetcher: threading.Thread | None = None
        self._want_more = threading.Event()  # wakes the fetcher
        self._arrived = threading.Event()  # the fetcher finished a fetch
        self._avg_runtime: float | None = None  # None until a task has been measured
        self._settling: set[tuple[str, int, str]] = set()  # being acked/moved in Redis
        self._abandoned: list[Delivery] = []  # left to lease expiry (see ``forget``)
        self._local = threading.local()  # .current: the message this thread runs
        self.taken = 0  # messages handed to executors (approximate with threads)
        self._flush_backoff = 0.0
        self._next_flush = 0.0  # no flush attempt before this (monotonic) after a failure
        server = broker_server(broker)
        self._fetching = Outage("fetch messages", server)
        self._flushing = Outage("acknowledge finished tasks", server)
        self._renewing = Outage("renew leases", server)
        self._renewed_at = time.monotonic()  # the last renewal that reached the broker
        self._beating = Outage("publish the heartbeat", server)
        self._syncing = Outage("sync revocations and rate limits", server)
        self._next_reclaim = 0.0
        self._next_promote = 0.0
        self._keeper: threading.Thread | None = None

    # -- the executor side -----------------------------------------------------------------
    def next(self) -> tuple[Delivery, Message] | None:
        """The next message to run, highest priority first; None once stopping."""
        backoff = 0.1
        with self._fetch_lock:
            while not self.stopping.is_set():
                if self._buffer and self._out_of_touch():
                    self._drop_lapsed()
                with self._lock:
                    if self._buffer:
                        _, _, delivery, message = heapq.heappop(self._buffer)
                        self._local.current = (delivery, message)
                        self.taken += 1
                        if self.ahead and not self._want_more.is_set() and self._running_low():
                            self._want_more.set()
                        return delivery, message
                if self.ahead and self._fetcher is not None:
                    self._want_more.set()
                    self._arrived.wait(0.05)
                    self._arrived.clear()
                    continue
                try:
                    flush = time.monotonic() >= self._next_flush
                    if flush and self._settler is None:
                        self.flush_quietly()
                        flush = False
                    with self._refill_lock:
                        self._refill(flush)
                    backoff = 0.1
                    self._fetching.ok()
                except REDIS_ERRORS as exc:  # also READONLY during a failover, OOM
                    self._fetching.failed(exc)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                except Exception:  # a bug or a malformed reply must not end the thread
                    logger.exception("Unexpected error while fetching; retrying in %.1fs", backoff)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        return None

    def current(self) -> tuple[Delivery, Message] | None:
        """The message :meth:`next` last gave the calling thread."""
        return getattr(self._local, "current", None)

    def unsettled(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` is still leased here with no outcome recorded yet (not
        completed, deferred, dead-lettered or requeued)."""
        key = self._key(delivery)
        with self._lock:
            return (
                key in self._held
                and key not in self._settling
                and all(d is not delivery for d, *_ in self._done)
            )

    def forget(self, delivery: Delivery) -> None:
        """Stop renewing ``delivery``'s lease without settling it: once the lease expires
        another worker takes the message over (its start counts toward the poison
        limit). It still counts as :attr:`held`, so that leaving the group never drops
        it."""
        with self._lock:
            if self._held.pop(self._key(delivery), None) is not None:
                self._abandoned.append(delivery)

    def complete(
        self,
        delivery: Delivery,
        task_id: str,
        status: str,
        data: bytes | None,
        runtime: float,
        retry: tuple[bytes, float] | None = None,
        task_name: str = "",
        sends: list[tuple[str, int, bytes]] | None = None,
    ) -> None:
        """Record that ``delivery`` finished; its ack (or, with ``retry``, its replacement
        by the next attempt) and its result go out in a batch, after ``sends`` (the
        messages it sent through :meth:`deferring_sends`). With ``task_name`` it is
        also counted for the heartbeat (as :meth:`count` does)."""
        avg = self._avg_runtime  # as _measure does, inline: this runs for every task
        self._avg_runtime = runtime if avg is None else max(runtime, 0.8 * avg + 0.2 * runtime)
        now = time.monotonic()
        queue = delivery.queue
        with self._lock:
            if self._started:
                self._started.pop(task_id, None)
            if task_name:
                counters = self.counters
                kind = _KIND.get(status)
                if kind:
                    counters[(kind, queue, task_name)] += 1
                    self.totals[kind] += 1
                counters[("runtime_ms", queue, task_name)] += _held(runtime * 1000)
                counters[(runtime_bucket(runtime), queue, task_name)] += 1
                if status == states.FAILURE and self.monitor is not None:
                    counters[failure_key(queue, task_name, task_id, delivery.body)] = _held(
                        time.time()
                    )
            done = self._done
            if not done and not self._started:
                self._done_since = now
            done.append((delivery, task_id, data, status in states.READY_STATES, retry))
            if sends:
                self._sends += sends
            due = len(done) >= MAX_ACK_BATCH or (
                (
                    not self._buffer
                    or now - self._done_since >= MAX_ACK_DELAY
                    or (self._avg_runtime or 0.0) > MAX_ACK_DELAY / 10
                )
                and not self.more_coming()
            )
            first_deferred = not due and len(done) == 1
            to_fetch = (
                due
                and self._settler is not None
                and not self._buffer
                and len(done) < MAX_ACK_BATCH
                and not self._fetch_lock.locked()
                and getattr(self._local, "current", None) is not None
            )
        if due and (now < self._next_flush or self.ahead):
            # Redis failed lately, or the worker is ahead: the keeper (woken once)
            if not self._wake.is_set():
                self._wake.set()
        elif due and to_fetch:
            # this executor fetches next, the batch at the head of that round trip;
            # the keeper flushes it should the fetch not come (within MAX_ACK_DELAY)
            if not self._wake.is_set():
                self._wake.set()
        elif due:
            self.flush_quietly()
        elif first_deferred:
            self._wake.set()  # the keeper flushes it if the next task runs long

    def deferring_sends(
        self,
    ) -> tuple[Callable[[str, int, bytes], bool], list[tuple[str, int, bytes]]] | None:
        """For the calling executor, about to send the links of the task it just ran: a
        sink (``AppState.send_sink``) keeping the plain sends among them, and the list it
        keeps them in, to hand to :meth:`complete`: they go out in the call that settles
        the task, before its acknowledgement, at the head of the executor's next fetch,
        so a chain link costs one round trip. None where the sends must go now: the
        broker cannot carry them, or the batch would not go out at once (a worker
        fetching ahead, messages still buffered, a thread that does not fetch)."""
        settler = self._settler
        if (
            settler is None
            or self.ahead
            or self._buffer
            or getattr(self._local, "current", None) is None
        ):
            return None
        carries = settler.carries
        kept: list[tuple[str, int, bytes]] = []

        def take(queue: str, priority: int, body: bytes) -> bool:
            if carries(queue, priority):
                kept.append((queue, priority, body))
                return True
            return False

        return take, kept

    def note_started(self, task_id: str, task_name: str) -> None:
        """Note that a task started running: its STARTED state goes out with the next
        batch (within :data:`STARTED_DELAY`), unless the task finishes first; then only
        its final state is written. The keeper is not woken: waking it for every task
        costs a sequence of short tasks (a chain) more than the write."""
        with self._lock:
            if not self._done and not self._started:
                self._done_since = time.monotonic()
            self._started[task_id] = (task_name, time.time())
        if not self._tracking:
            self._tracking = True
            self._wake.set()

    def _started_docs(self, started: dict[str, tuple[str, float]]) -> list[tuple[str, bytes, int]]:
        worker = self.identity.get("worker") or self.name
        pid = os.getpid()
        dumps = self.serializer.dumps
        return [
            (
                task_id,
                dumps(
                    {
                        "status": states.STARTED,
                        "task": task,
                        "result": {"hostname": worker, "pid": pid, "started": at},
                    }
                ),
                STARTED,
            )
            for task_id, (task, at) in started.items()
        ]

    def _measure(self, runtime: float) -> None:
        """Fold a task's runtime into the estimate that sizes fetched batches. It follows a
        slow task at once and forgets it gradually, so that slow work is never hoarded
        on the strength of earlier fast tasks."""
        avg = self._avg_runtime
        self._avg_runtime = runtime if avg is None else max(runtime, 0.8 * avg + 0.2 * runtime)

    def is_poison(self, delivery: Delivery, message: Message) -> bool:
        """Before running a redelivered message: count the start in Redis and, if it has
        now been started TASKQ_MAX_DELIVERIES times without finishing, dead-letter it.

        Only starts are counted, not deliveries, so messages that were merely prefetched
        beside a task that crashed its worker are not blamed. First deliveries (the
        common case) cost nothing: their start is assumed, not recorded.
        """
        if delivery.deliveries <= 1:
            return False
        starts = self.broker.note_start(delivery)  # starts of redeliveries, this one too
        if starts < self.max_deliveries:
            return False
        exc = WorkerLostError(
            f"started {starts} times without finishing (TASKQ_MAX_DELIVERIES="
            f"{self.max_deliveries}), delivered {delivery.deliveries} times; its worker "
            "probably crashed while running it"
        )
        task = self.tasks.get(message.task)
        data = None
        if task is not None and not task.options_for(self.state)["ignore_result"]:
            data = self.serializer.dumps(
                {
                    "status": states.FAILURE,
                    "task": message.task,
                    "date_done": time.time(),
                    **exception_meta(exc),
                }
            )
        self.dead_letter(delivery, str(exc), message.task, message.id, data)
        self.release_unique(message)
        return True

    def count(self, queue: str, task: str, status: str, runtime: float) -> None:
        """Add a finished task to the counters the heartbeat publishes."""
        kind = _KIND.get(status)
        with self._lock:
            counters = self.counters
            if kind:
                counters[(kind, queue, task)] += 1
                self.totals[kind] += 1
            counters[("runtime_ms", queue, task)] += _held(runtime * 1000)
            counters[(runtime_bucket(runtime), queue, task)] += 1

    def heartbeat(self) -> None:
        """Publish this process's state and counters; learn which queues are paused."""
        if self.monitor is None:
            return
        with self._lock:
            counters, self.counters = self.counters, Counter()
            prefetched = len(self._buffer)
            totals = dict(self.totals)
            reserved = Counter(key[0] for key in self._held)  # per queue, for backlogs
        unfetched = getattr(self.broker, "unfetched", None)  # AMQP: pushed, not fetched
        if unfetched is not None:
            reserved.update(unfetched())
        running = [
            {
                "id": e.message.id,
                "task": e.message.task,
                "args": _preview(e.message.args, e.message.kwargs),
                "started": time.time() - (time.monotonic() - e.started),
            }
            for e in self.guard.snapshot()
        ]
        info = {
            **self.identity,
            "process": self.name,
            "queues": self.queues,
            "started": self.started,
            "heartbeat": time.time(),
            "running": running,
            "prefetched": prefetched,
            "reserved": dict(reserved),
            "rss": rss_bytes(),
            "processed": 0,
            "failed": 0,
            "retried": 0,
            "paused": sorted(self.paused),
            **totals,
        }
        try:
            self.paused = self.monitor.beat(self.name, info, counters)
        except BaseException:
            with self._lock:
                self.counters.update(counters)
            raise

    def defer(self, delivery: Delivery, due: float) -> None:
        """Hand an unstarted message back to Redis to run at unix time ``due`` (it keeps
        its retry count); written with the next batch."""
        with self._lock:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.append((delivery, "", None, False, (delivery.body, due)))
        self._wake.set()

    def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        task: str,
        task_id: str,
        data: bytes | None = None,
        traceback: str = "",
    ) -> None:
        """Move a message that cannot be run to the dead-letter store."""
        logger.error("Dead-lettering message %s of task %s: %s", task_id, task, reason)
        if self.emit is not None:
            self.emit("task-dead-lettered", task_id, task, delivery.queue, reason=reason[:500])
        if self._started:
            with self._lock:
                self._started.pop(task_id, None)
        if signals.task_rejected.receivers:
            signals.send_safely(
                signals.task_rejected, task, task_id=task_id, reason=reason, queue=delivery.queue
            )
        trimmed = self._settle(
            delivery,
            f"dead-letter message {task_id}",
            lambda: self.broker.dead_letter(self.name, delivery, reason, task, task_id, traceback),
        )
        if isinstance(trimmed, int) and trimmed:
            logger.warning(
                "Trimmed the %d oldest dead letter(s) of queue %s: its dead-letter "
                "store was over TASKQ_DEAD_LETTER_MAX_BYTES (or 100,000 entries)",
                trimmed,
                delivery.queue,
            )
            with self._lock:
                self.counters[("dead_letters_trimmed", delivery.queue, "")] += trimmed
                self.totals["dead_letters_trimmed"] += trimmed
        if data is not None and self.backend is not None:  # last: it wakes waiters
            backend = self.backend
            self._persist(
                f"store the result of {task_id}",
                lambda: backend.store_many([(task_id, data, True)], self.result_ttl),
            )

    def requeue(self, delivery: Delivery) -> None:
        """Put one held message back in its queue as it is."""
        self._settle(
            delivery, "requeue a message", lambda: self.broker.requeue(self.name, [delivery])
        )

    def acknowledge(self, delivery: Delivery) -> None:
        """Acknowledge an unstarted message now kept elsewhere (parked by a concurrency
        limit, ``worker/hooks/concurrency.py``), at once."""
        self._settle(
            delivery, "acknowledge a message", lambda: self.broker.ack(self.name, [delivery])
        )

    def _settle(self, delivery: Delivery, what: str, action: Callable[[], object]) -> object:
        """Run ``action``, which removes ``delivery`` from this consumer's leases in Redis
        (retried as :meth:`_persist` does), then stop renewing it; return what it returned."""
        key = self._key(delivery)
        with self._lock:
            self._settling.add(key)
        try:
            result = self._persist(what, action)
            self._release([delivery])
            return result
        finally:
            with self._lock:
                self._settling.discard(key)

    def _persist(self, what: str, action: Callable[[], object]) -> object:
        """Run ``action`` until Redis accepts it: a Redis error (lost connection, OOM,
        READONLY...) is logged once and retried with backoff. Gives up (raising) only
        once the consumer is closed; the lease then hands the message to another
        worker."""
        outage = Outage(what, broker_server(self.broker))
        backoff = 0.1
        while True:
            try:
                result = action()
            except REDIS_ERRORS as exc:
                if self._closed.is_set():
                    raise
                outage.failed(exc)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            else:
                outage.ok()
                return result

    # -- batching --------------------------------------------------------------------------
    def flush(self) -> bool:
        """Write pending states and results, then acknowledge their messages; False if
        there were none."""
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> bool:
        batch, started, keys, sends = self._take()
        if not batch and not started:
            return False
        try:
            results, retries, acks = self._split(batch, started)
            if not retries and self._settler is not None:
                self._settler.ack_storing(self.name, acks, results, self.result_ttl, sends)
            else:
                if sends:  # first, as they were made before their tasks finished
                    self.broker.enqueue_many([(q, p, body, None) for q, p, body in sends])
                if results and self.backend is not None:
                    self.backend.store_many(results, self.result_ttl)
                if retries:
                    self.broker.reschedule(self.name, retries)
                self.broker.ack(self.name, acks)
        except BaseException:
            self._restore(batch, started, keys, sends)
            raise
        self._settled(keys)
        return True

    def _take(
        self,
    ) -> tuple[list[_Done], dict[str, tuple[str, float]], set[_Key], list[tuple[str, int, bytes]]]:
        """The batch to write: the finished deliveries, the STARTED states not written
        yet and the messages the tasks sent, the deliveries marked as settling."""
        with self._lock:
            batch, self._done = self._done, []
            started, self._started = self._started, {}
            sends, self._sends = self._sends, []
            keys = {(d.queue, d.priority, d.entry_id) for d, *_ in batch}  # as _key
            self._settling |= keys
        return batch, started, keys, sends

    def _split(
        self, batch: list[_Done], started: dict[str, tuple[str, float]]
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[Delivery, bytes, float]], list[Delivery]]:
        """A batch as its results (none without a backend), retries and acks."""
        results: list[tuple[str, bytes, int]] = self._started_docs(started) if started else []
        retries: list[tuple[Delivery, bytes, float]] = []
        acks: list[Delivery] = []
        for d, task_id, data, ready, retry in batch:
            if data is not None:
                results.append((task_id, data, ready))
            if retry is None:
                acks.append(d)
            else:
                retries.append((d, *retry))
        if self.backend is None:
            results = []
        return results, retries, acks

    def _restore(
        self,
        batch: list[_Done],
        started: dict[str, tuple[str, float]],
        keys: set[_Key],
        sends: list[tuple[str, int, bytes]],
    ) -> None:
        """Put back a batch that did not reach the broker, for the next flush."""
        with self._lock:
            self._done = batch + self._done
            self._started = {**started, **self._started}
            self._sends = sends + self._sends
            self._settling -= keys

    def _settled(self, keys: set[_Key]) -> None:
        with self._lock:
            pop = self._held.pop
            for key in keys:
                pop(key, None)
            self._settling -= keys

    def flush_quietly(self) -> bool:
        """``flush`` that keeps the batch for a later attempt when Redis fails (any Redis
        error: lost connection, OOM, READONLY...); the next attempt waits for a backoff
        (the keeper makes it). Logs once per outage; True when flushed."""
        try:
            if not self.flush():
                return True
        except REDIS_ERRORS as exc:
            self._flush_backoff = min(max(0.1, self._flush_backoff * 2), MAX_BACKOFF)
            self._next_flush = time.monotonic() + self._flush_backoff
            self._flushing.failed(exc, f"{len(self._done)} kept, retrying with backoff")
            self._wake.set()
            return False
        self._flush_backoff = 0.0
        self._next_flush = 0.0
        self._flushing.ok()
        return True

    # -- fetching --------------------------------------------------------------------------
    def _batch_size(self) -> int:
        """How many messages to fetch: about :data:`BATCH_WORK` seconds of work per thread
        by the measured runtime; one per idle thread until a task has been measured or
        when tasks are slow, so that no process holds unstarted work another could
        start now."""
        idle = max(1, self.threads - self.guard.threads_busy() + self.async_room())
        avg = self._avg_runtime
        if avg is None or avg >= BATCH_WORK:
            return max(1, min(self.prefetch, idle))
        if self.ahead:  # enough to work through two round trips as well
            per_thread = max(1, int((BATCH_WORK + 2 * self._rtt) / max(avg, 1e-6)))
            cap = SLOW_LINK_PREFETCH if self._auto_prefetch else self.prefetch
            return max(1, min(cap, per_thread * self.threads))
        per_thread = max(1, int(BATCH_WORK / max(avg, 1e-6)))
        return max(1, min(self.prefetch, per_thread * self.threads))

    def _running_low(self) -> bool:
        """Whether the buffer holds less than about one round trip of work (lock held)."""
        avg = self._avg_runtime or 0.0
        return len(self._buffer) * avg < 1.5 * self._rtt * self.threads

    def _note_fetch(self, seconds: float | None) -> None:
        """Note a fetch: ``seconds`` it took when it came back full (a round trip and the
        reading of a batch that was waiting, folded into the link estimate), None when
        it did not (no backlog: fetch on demand again, for the lowest latency)."""
        if seconds is not None:
            self._rtt = seconds if self._rtt == 0.0 else 0.8 * self._rtt + 0.2 * seconds
            slow = self._rtt > SLOW_LINK
            if slow and not self.slow_link:
                logger.info(
                    "Fetches take %.1f ms: fetching ahead and acknowledging in the background",
                    self._rtt * 1000,
                )
            self.slow_link = slow
        # A backlog of fast tasks only: slow or unmeasured ones are fetched one per idle
        # executor, and fetching ahead of those would hoard work another worker could run.
        avg = self._avg_runtime
        backlog = seconds is not None and avg is not None and avg < BATCH_WORK
        ahead = backlog or self.slow_link
        if ahead and self._fetcher is None:
            self._fetcher = threading.Thread(
                target=self._fetch_ahead, name="taskq-fetcher", daemon=True
            )
            self._fetcher.start()
        self.ahead = ahead

    def _fetch_ahead(self) -> None:
        # While ahead: fetch whenever the buffer runs low, while executors work.
        backoff = 0.1
        while not self.stopping.is_set():
            if not self._want_more.wait(0.5):
                continue
            try:
                with self._refill_lock:
                    self._refill()
                # cleared only now: executors do not ask again while a fetch is on its way
                self._want_more.clear()
                backoff = 0.1
                self._fetching.ok()
            except REDIS_ERRORS as exc:
                self._fetching.failed(exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._want_more.set()
            except Exception:  # a bug or a malformed reply must not end the thread
                logger.exception("Unexpected error while fetching; retrying in %.1fs", backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._want_more.set()
            finally:
                self._arrived.set()
            with self._lock:
                if self.ahead and self._running_low():
                    self._want_more.set()

    def _refill(self, flush: bool = False) -> None:
        # flush: the finished batch goes out too, at the head of the fetch when it can
        piggyback = self.revocations.piggyback
        if piggyback is None:
            self.revocations.sync()
        queues = self._unpaused() if self.paused else self.queues
        if not queues:  # every queue paused: wait for a resume (or a stop)
            if flush:
                self.flush_quietly()
            self.stopping.wait(0.2)
            return
        now = time.monotonic()
        if now >= self._next_promote:
            next_due = self.broker.promote(queues)
            wait = 1.0 if next_due is None else min(1.0, max(0.0, next_due - time.time()))
            self._next_promote = now + wait
        deliveries: list[Delivery] = []
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.visibility_timeout / 6
            deliveries = self.broker.reclaim(
                self.name, queues, self.visibility_timeout * 2 / 3, self._batch_size()
            )
            if deliveries:
                logger.warning(
                    "Took over %d task(s) whose worker stopped renewing them", len(deliveries)
                )
                self.revocations.sync(force=True)
                if flush:
                    self.flush_quietly()
        if not deliveries:
            timeout = max(0.0, min(1.0, self._next_promote - now, self._next_reclaim - now))
            # the revocations made until the messages were taken come with them
            size = self._batch_size()
            started = time.perf_counter()
            if flush:
                deliveries = self._fetch_flushing(queues, size, timeout, piggyback)
            else:
                deliveries = self.broker.fetch(self.name, queues, size, timeout, then=piggyback)
            full = len(deliveries) >= size > 1
            self._note_fetch(time.perf_counter() - started if full else None)
        self._accept(deliveries)
        if self.stopping.is_set():
            self.return_buffered()

    def _fetch_flushing(
        self, queues: Sequence[str], size: int, timeout: float, piggyback: Any
    ) -> list[Delivery]:
        """Fetch with the finished batch's results and acks at the head of the same round
        trip (one settle call; only with a ``_settler``), so that a task that finished
        just before costs no round trip of its own. The batch is settled (or kept, when
        its call failed) before any blocking read."""
        settler = self._settler
        assert settler is not None
        self._flush_lock.acquire()
        batch, started, keys, sends = self._take()
        results, retries, acks = self._split(batch, started)
        if retries or not (batch or started):
            self._restore(batch, started, keys, sends)
            self._flush_lock.release()
            if batch or started:
                self.flush_quietly()
            return self.broker.fetch(self.name, queues, size, timeout, then=piggyback)
        command, skipped = settler.settle_command(self.name, acks, results, self.result_ttl, sends)
        held = True
        failed = False

        def settled(reply: Any) -> None:
            nonlocal held, failed
            try:
                skipped(reply)
            except Exception:  # an error reply: the batch waits for a flush of its own
                self._restore(batch, started, keys, sends)
                failed = True
            else:
                self._settled(keys)
                self._flush_backoff = 0.0
                self._next_flush = 0.0
                self._flushing.ok()
            finally:
                held = False
                self._flush_lock.release()

        try:
            return settler.fetch(
                self.name, queues, size, timeout, then=piggyback, first=(command, settled)
            )
        finally:
            if held:  # the round trip failed: the batch may not have reached Redis
                self._restore(batch, started, keys, sends)
                self._flush_lock.release()
            if failed:
                self.flush_quietly()

    def _unpaused(self) -> list[str]:
        """The queues to fetch from while some are paused. Consuming every queue
        (``memory://``'s in-process worker, ``*``) means every known queue but those."""
        paused = self.paused
        if ANY_QUEUE in self.queues:
            return sorted(self.broker.known_queues() - paused)
        return [q for q in self.queues if q not in paused]

    def _accept(self, deliveries: list[Delivery]) -> None:
        self._hold(deliveries)  # one lock for the batch, not one per message
        ready: list[tuple[Delivery, Message]] = []
        decode, serializer = Message.from_bytes, self.serializer
        for delivery in deliveries:
            try:
                message = decode(delivery.body, serializer)
            except Exception as exc:  # DecodeError, or a decoder bug: the message's fault
                # Task name and id stay "?": nothing in an unverified body is trusted, and
                # no result is written for it (its claimed id may be another task's).
                reason = (
                    str(exc)
                    if isinstance(exc, DecodeError)
                    else f"undecodable message ({type(exc).__name__}: {exc})"
                )
                self.dead_letter(delivery, unverified_reason(reason, delivery.body), "?", "?")
                continue
            ready.append((delivery, message))
        replay.forget_redelivered(self, ready)
        push, seq = heapq.heappush, self._seq
        with self._lock:
            buffer = self._buffer
            for delivery, message in ready:
                push(buffer, (-delivery.priority, next(seq), delivery, message))

    # -- leases ----------------------------------------------------------------------------
    def _key(self, d: Delivery) -> tuple[str, int, str]:
        return (d.queue, d.priority, d.entry_id)

    def _hold(self, deliveries: list[Delivery]) -> None:
        held = {(d.queue, d.priority, d.entry_id): d for d in deliveries}  # as _key
        with self._lock:
            self._held.update(held)

    def _release(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            for d in deliveries:
                self._held.pop(self._key(d), None)

    @property
    def held(self) -> int:
        """Messages leased to this consumer (buffered, running, or awaiting ack)."""
        return len(self._held) + len(self._abandoned)

    def start_keeper(self) -> None:
        """Start the thread that renews leases and returns the buffer on stop."""
        self._keeper = threading.Thread(target=self._keep, name="taskq-keeper", daemon=True)
        self._renewed_at = time.monotonic()
        self._keeper.start()

    def _keep(self) -> None:
        # Renews leases until the consumer is closed (also during a graceful stop, while
        # running tasks finish), returns the buffer at once on stop, flushes deferred
        # batches, syncs revocations and enforces time limits and terminations.
        interval = self.visibility_timeout / 3
        next_renew = time.monotonic() + interval
        next_sync = 0.0
        next_beat = 0.0
        returned = False
        while not self._closed.is_set():
            now = time.monotonic()
            timeout = min(next_renew, next_sync, next_beat) - now
            if self._done or self._started:
                flush_at = max(self._done_since + MAX_ACK_DELAY, self._next_flush)
                timeout = min(timeout, flush_at - now)
            if self._tracking:
                timeout = min(timeout, STARTED_DELAY)
            deadline = self.guard.next_deadline(hard=self.hard_limits)
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            self._wake.wait(max(0.0, timeout))
            self._wake.clear()
            try:
                if self.stopping.is_set() and not returned:
                    returned = True
                    self.return_buffered_quietly()
                now = time.monotonic()
                if (
                    (self._done or self._started)
                    and (
                        now - self._done_since >= MAX_ACK_DELAY or len(self._done) >= MAX_ACK_BATCH
                    )
                    and now >= self._next_flush
                ):
                    self.flush_quietly()
                if now >= next_sync:
                    next_sync = now + 1.0
                    self._keeper_step(self._syncing, self._sync)
                if now >= next_beat:
                    next_beat = now + HEARTBEAT_INTERVAL
                    self._keeper_step(self._beating, self.heartbeat)
                self._police(now)
                if now >= next_renew:
                    next_renew = now + interval
                    self._renew_step(now)
            except Exception:  # the keeper must outlive any surprise
                logger.exception("Lease keeper error")

    @staticmethod
    def _keeper_step(outage: Outage, step: Callable[[], object]) -> None:
        # each step is retried on its own schedule, so one line per outage is enough
        try:
            step()
        except REDIS_ERRORS as exc:
            outage.failed(exc, "retrying")
        else:
            outage.ok()

    def _renew_step(self, now: float) -> None:
        try:
            self.renew()
        except REDIS_ERRORS as exc:
            self._renewing.failed(exc, "retrying")
            if self._out_of_touch():
                self._drop_lapsed()
        else:
            self._renewing.ok()
            self._renewed_at = now

    def _out_of_touch(self) -> bool:
        """Whether no lease renewal has reached the broker for longer than the visibility
        timeout (a partition, a long outage): the leases have lapsed by now."""
        return (
            self._keeper is not None
            and time.monotonic() - self._renewed_at > self.visibility_timeout
        )

    def _drop_lapsed(self) -> None:
        """Give up the unstarted messages once their leases have lapsed: other workers
        take them over, and running them here too would only run them twice."""
        with self._lock:
            entries, self._buffer = self._buffer, []
        if entries:
            logger.warning(
                "No lease renewed for %.0fs (TASKQ_VISIBILITY_TIMEOUT is %gs): dropping %d "
                "unstarted task(s) that other workers take over",
                time.monotonic() - self._renewed_at,
                self.visibility_timeout,
                len(entries),
            )
            self._release([d for _, _, d, _ in entries])

    def _sync(self) -> None:
        self.revocations.sync(force=True)
        if self.limiter is not None:
            had = self.limiter.has_overrides
            self.limiter.reload()
            if self.limiter.has_overrides != had:
                self.on_overrides_changed()

    def _police(self, now: float) -> None:
        """Stop running tasks that were revoked with terminate or ran out of time."""
        for entry in self.guard.snapshot():
            if entry.interrupted:
                continue
            if entry.thread_id < 0:  # an async def task: cancelled, never the process killed
                terminate = self.revocations.terminating(entry.message.id)
                self.guard.police_coroutine(entry, now, terminate)
                continue
            if self.revocations.terminating(entry.message.id):
                logger.warning("Terminating task %s (revoked)", entry.message.id)
                self.guard.interrupt(entry, TaskTerminated)
            elif (
                self.hard_limits and entry.hard_deadline is not None and now >= entry.hard_deadline
            ):
                self._kill_over_time(entry)
            elif (
                entry.soft_deadline is not None
                and now >= entry.soft_deadline
                and not self.guard.uses_signals(entry)
            ):
                self.guard.interrupt(entry, SoftTimeLimitExceeded)

    def _kill_over_time(self, entry: Running) -> None:
        """Record TimeLimitExceeded (or the retry the task asks for), then end this
        process: the prefork supervisor starts a new child."""
        message, delivery = entry.message, entry.delivery
        task = self.tasks.get(message.task)
        opts = task.options_for(self.state) if task else {}
        limit = opts.get("time_limit")
        exc = TimeLimitExceeded(
            f"task ran past its time_limit of {limit}s and its process was killed"
        )
        retry = None
        retries_wanted = task is not None and isinstance(exc, task.autoretry_for)
        max_retries = opts.get("max_retries")
        due = autoretry_at(task, opts, message.retries, exc) if task is not None else None
        if due is not None:
            retry = (
                message.replace(retries=message.retries + 1, eta=due).to_bytes(self.serializer),
                due,
            )
        status = states.RETRY if retry else states.FAILURE
        meta = exception_meta(exc)
        run = (
            extended_fields(message, cast(str | None, self.identity.get("worker")))
            if self.result_extended
            else {"task": message.task}
        )
        doc = self.serializer.dumps({"status": status, **run, "date_done": time.time(), **meta})
        logger.error(
            "Task %s[%s] exceeded its time limit (%ss): killing its process",
            message.task,
            message.id,
            limit,
        )
        if retries_wanted and retry is None:
            self.dead_letter(
                delivery,
                f"retries exhausted after {message.retries} (max_retries={max_retries}): {exc}",
                message.task,
                message.id,
                doc,
                meta["traceback"],
            )
        else:
            self.complete(delivery, message.id, status, doc, 0.0, retry)
        if self.emit is not None:
            kind = "task-retried" if retry else "task-failed"
            self.emit(kind, message.id, message.task, delivery.queue, exception=str(exc))
        self.flush()
        if retry is None:
            self.release_unique(message)
        flush_events()  # os._exit skips atexit
        os._exit(1)

    def release_unique(self, message: Message) -> None:
        """Free the unique key of a task that reached a final state, if it has one."""
        key = message.headers.get(UNIQUE_HEADER)
        if key:
            try:
                self.broker.release_unique(key, message.id)
            except REDIS_ERRORS:
                logger.warning(
                    "Could not free the unique key of %s; it expires by itself", message.id
                )

    def renew(self) -> None:
        """Extend the leases of every held message; forget the ones lost meanwhile."""
        with self._lock:
            held = list(self._held.values())
        lost = self.broker.renew(self.name, held)
        if lost:  # not those settled meanwhile (acked, requeued...): they are not lost
            with self._lock:
                lost = [
                    d
                    for d in lost
                    if self._key(d) in self._held and self._key(d) not in self._settling
                ]
        if lost:
            logger.warning("Lost the lease of %d task(s); another worker may run them", len(lost))
            gone = {id(d) for d in lost}
            with self._lock:
                self._buffer = [e for e in self._buffer if id(e[2]) not in gone]
                heapq.heapify(self._buffer)
            self._release(lost)

    # -- stopping --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop fetching; the keeper thread returns unstarted messages at once."""
        self.stopping.set()
        self._wake.set()

    def return_buffered(self) -> None:
        """Give every unstarted message back to the broker."""
        with self._lock:
            entries, self._buffer = self._buffer, []
            keys = {self._key(d) for _, _, d, _ in entries}
            self._settling |= keys
        deliveries = [d for _, _, d, _ in entries]
        try:
            if deliveries:
                try:
                    self.broker.requeue(self.name, deliveries)
                except BaseException:
                    with self._lock:
                        self._buffer.extend(entries)
                        heapq.heapify(self._buffer)
                    raise
                logger.info("Returned %d unstarted task(s) to the queue", len(deliveries))
                self._release(deliveries)
        finally:
            with self._lock:
                self._settling -= keys

    def return_buffered_quietly(self) -> None:
        """``return_buffered`` that leaves them to lease expiry when Redis is gone."""
        try:
            self.return_buffered()
        except REDIS_ERRORS as exc:
            logger.warning(
                "Could not return unstarted tasks (%s); they will be delivered "
                "again after the visibility timeout",
                exc,
            )

    def close(self) -> None:
        """Final flush and return; call after every executor thread has finished."""
        self.stop()
        self.flush_quietly()
        self.return_buffered_quietly()
        self._closed.set()
        self._wake.set()
        if self.monitor is not None:
            try:
                self.heartbeat()  # the last counters
                self.monitor.leave(self.name)
            except REDIS_ERRORS:
                pass

    def leave(self) -> None:
        """Remove this consumer from the group (after ``close``) wherever it holds
        nothing; Redis checks that, so what it still holds stays to be reclaimed."""
        try:
            self.broker.forget_consumer(self.name, self.queues)
        except CONNECTION_ERRORS:
            pass
        except REDIS_ERRORS as exc:
            logger.warning("Could not remove consumer %s from the group (%s)", self.name, exc)


_KIND = {
    states.SUCCESS: "processed",
    states.FAILURE: "failed",
    states.RETRY: "retried",
    states.REVOKED: "processed",
}


def _nothing() -> None:
    pass


def _none_free() -> int:
    return 0


def _no() -> bool:
    return False


def _held(value: float) -> int:
    """``value`` to hold in a Counter as it is (a float), typed as the int typeshed gives
    Counter values: Counter adds and stores floats unchanged."""
    return cast(int, value)


def _preview(args: tuple[object, ...], kwargs: dict[str, object], limit: int = 100) -> str:
    text = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    return text if len(text) <= limit else text[: limit - 1] + "…"
