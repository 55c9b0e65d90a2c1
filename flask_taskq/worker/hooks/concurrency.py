"""Per-key concurrency limits (``concurrency_key`` / ``concurrency_limit``,
``TASKQ_CONCURRENCY_LIMITS``; ``docs/concurrency.rst``).

Before the run the hook takes a slot of the call's key in the store. When the key is at
its limit the message is parked in the store and acknowledged: no worker holds it, no
thread waits for it, nothing polls. After the run (also when it raised) the slot is given
back, and the store hands the oldest parked messages the free slots: this process sends
them to their queue, then confirms. A :class:`SlotKeeper` thread renews the leases of the
slots this process holds and wakes waiters of keys whose holder died.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import states
from ...broker.memory import MemoryBroker
from ...concurrency import Limit, limit_of
from ...exceptions import ConcurrencyKeyError, TaskQueueError
from ...result import exception_meta
from ...store.concurrency import ConcurrencyStore, Parked, Slots
from ...store.memory import MemoryStore
from ..consumer import REDIS_ERRORS, Consumer
from ..execute import Executor, Outcome, extended_fields
from .base import Context, Hook

if TYPE_CHECKING:
    from ...broker import Broker
    from ...task import Task

logger = logging.getLogger("flask_taskq.worker")

#: A slot's lease, as a share of TASKQ_VISIBILITY_TIMEOUT: renewed every sixth of the
#: timeout, it runs out (and the reapers wake a waiter) within the timeout once its
#: holder is gone.
LEASE_SHARE = 2 / 3


def send_woken(broker: Broker, store: ConcurrencyStore, key: str, woken: list[Parked]) -> None:
    """Send woken messages to their queues, then forget their parked copies. A crash in
    between leaves the copies: they are woken again once their claim runs out (a
    duplicate, never a loss)."""
    if not woken:
        return
    broker.enqueue_many((m.queue, m.priority, m.body, None) for m in woken)
    store.woken(key, [m.task_id for m in woken])


class SlotKeeper:
    """Renews the leases of the slots this process holds and wakes the waiters of keys
    at their limit whose holders' leases ran out; one thread per consuming process,
    started with the first limited task."""

    def __init__(
        self,
        store: ConcurrencyStore,
        broker: Broker,
        lease: float,
        stopping: threading.Event,
    ) -> None:
        self.store = store
        self.broker = broker
        self.lease = lease
        self.stopping = stopping
        self.every = lease / 4
        self._held: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread, once."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="taskq-slots", daemon=True)
        self._thread.start()

    def hold(self, key: str, task_id: str) -> None:
        """Renew ``task_id``'s slot of ``key`` from now on."""
        with self._lock:
            self._held.setdefault(key, set()).add(task_id)

    def drop(self, key: str, task_id: str) -> None:
        """Stop renewing ``task_id``'s slot of ``key``."""
        with self._lock:
            ids = self._held.get(key)
            if ids is not None:
                ids.discard(task_id)
                if not ids:
                    del self._held[key]

    def _run(self) -> None:
        while not (self.stopping.is_set() and not self._held):
            self.stopping.wait(self.every)
            for step in (self.renew, self.reap):
                try:
                    step()
                except REDIS_ERRORS as exc:
                    logger.warning("Concurrency slots: %s (%s); retrying", exc, type(exc).__name__)
                except Exception:  # the keeper must outlive any surprise
                    logger.exception("Concurrency slot keeper error")

    def renew(self) -> None:
        """Extend the leases of the slots held here."""
        with self._lock:
            held = {key: sorted(ids) for key, ids in self._held.items()}
        for key, ids in held.items():
            kept = self.store.renew(key, ids, self.lease)
            if kept < len(ids):
                logger.warning(
                    "Lost %d concurrency slot(s) of %s (their lease ran out); another "
                    "task may start meanwhile",
                    len(ids) - kept,
                    key,
                )

    def reap(self) -> None:
        """Wake the waiters of noted keys into slots freed by expired leases; forget
        keys found idle."""
        for key, mark in self.store.noted().items():
            slots = self.store.wake(key, self.lease)
            send_woken(self.broker, self.store, key, slots.woken)
            if slots.holders == 0 and slots.waiting == 0:
                self.store.forget(key, mark)


class Concurrency(Hook):
    """Takes a slot of the call's concurrency key before the run, or parks the message;
    gives it back after."""

    def __init__(self, consumer: Consumer, executor: Executor) -> None:
        self.consumer = consumer
        self.executor = executor
        self.store = consumer.store.concurrency
        self.broker = consumer.broker
        self.lease = consumer.visibility_timeout * LEASE_SHARE
        self.config: dict[str, Any] = dict(consumer.state.config["TASKQ_CONCURRENCY_LIMITS"])
        self.revoked = consumer.revocations.ids
        self.keeper = SlotKeeper(self.store, self.broker, self.lease, consumer.stopping)
        self._limits: dict[str, Limit | TaskQueueError | None] = {}
        #: Why limits cannot be kept here (a memory store beside a broker of several
        #: processes: AMQP without a Redis store), or None.
        self.refusal = (
            None
            if isinstance(consumer.broker, MemoryBroker)
            or not isinstance(consumer.store, MemoryStore)
            else TaskQueueError(
                "concurrency limits need a store shared by every worker: set "
                "TASKQ_STORE_URL (or a Redis TASKQ_RESULT_BACKEND) beside an AMQP broker"
            )
        )
        #: id of the context -> (key, task id) of each slot held by a running task
        self._holding: dict[int, tuple[str, str]] = {}
        if any(self._limit(t, t.options_for(consumer.state)) for t in consumer.tasks.values()):
            self.keeper.start()

    def _limit(self, task: Task, options: dict[str, Any]) -> Limit | TaskQueueError | None:
        if task.name not in self._limits:
            try:
                found: Limit | TaskQueueError | None = limit_of(
                    task.name, task.fn, task.bind, options, self.config
                )
            except ConcurrencyKeyError as exc:  # a key from TASKQ_CONCURRENCY_LIMITS
                found = exc
            if found is not None and self.refusal is not None:
                found = self.refusal
            self._limits[task.name] = found
        return self._limits[task.name]

    def applies(self, task: Task | None, options: dict[str, Any]) -> bool:
        """For a task with a limit (its own or from ``TASKQ_CONCURRENCY_LIMITS``)."""
        if task is None or self._limit(task, options) is None:
            return False
        self.keeper.start()
        return True

    def before(self, ctx: Context) -> bool:
        assert ctx.task is not None and ctx.delivery is not None
        message, delivery = ctx.message, ctx.delivery
        limit = self._limits[ctx.task.name]
        if limit is None:
            return True
        if isinstance(limit, TaskQueueError):
            return self._fail(ctx, limit)
        if message.id in self.revoked or (
            message.expires is not None and time.time() > message.expires
        ):
            return True  # it will not run (revocation hook): no slot needed
        try:
            key = limit.key_of(message.args, message.kwargs)
        except ConcurrencyKeyError as exc:
            return self._fail(ctx, exc)
        parked = Parked(message.id, delivery.queue, delivery.priority, delivery.body)
        try:
            slots = self.store.acquire(key, limit.limit, self.lease, parked)
        except REDIS_ERRORS as exc:
            logger.warning("Could not take a concurrency slot of %s (%s); trying later", key, exc)
            self.consumer.defer(delivery, time.time() + 1.0)
            return False
        if slots.granted:
            self.keeper.hold(key, message.id)
            self._holding[id(ctx)] = (key, message.id)
        self._quietly("send woken tasks", lambda: self._after_acquire(key, limit, slots))
        if slots.granted:
            return True
        self.consumer.acknowledge(delivery)  # parked: the store keeps it now
        return False

    def _after_acquire(self, key: str, limit: Limit, slots: Slots) -> None:
        if slots.waiting or slots.holders >= limit.limit:
            self.store.note(key)
        send_woken(self.broker, self.store, key, slots.woken)

    def finish(self, ctx: Context) -> None:
        held = self._holding.pop(id(ctx), None)
        if held is None:
            return
        key, task_id = held
        self.keeper.drop(key, task_id)

        def release() -> None:
            slots = self.store.release(key, task_id, self.lease)
            send_woken(self.broker, self.store, key, slots.woken)

        self._quietly(f"give back the concurrency slot of {key}", release)

    @staticmethod
    def _quietly(what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except REDIS_ERRORS as exc:
            logger.warning(
                "Could not %s (%s: %s); the slot keepers of the workers catch up once its "
                "lease runs out",
                what,
                type(exc).__name__,
                exc,
            )

    def _fail(self, ctx: Context, exc: Exception) -> bool:
        """The task fails with ``exc`` without running (its result says why)."""
        logger.error("Task %s[%s] failed: %s", ctx.message.task, ctx.message.id, exc)
        data = None
        if self.executor.keeps(ctx):
            executor = self.executor
            run = (
                extended_fields(ctx.message, executor.worker)
                if executor.extended
                else {"task": ctx.message.task}
            )
            data = executor.dumps(
                {"status": states.FAILURE, **run, "date_done": time.time(), **exception_meta(exc)}
            )
        ctx.error = exc
        ctx.outcome = Outcome(states.FAILURE, data, exception=exc)
        return True
