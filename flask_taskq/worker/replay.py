"""Refusing replayed signed messages (``TASKQ_SIGNING_KEY``).

A signature proves who made a body, not that it is sent once: anyone who can XADD to a
stream could add a captured signed body again. With signing on, just before a message
runs, the worker records where its attempt started (task id -> attempt and delivery, kept
for TASKQ_RESULT_EXPIRES) in the store, in one step (on Redis one script call, ``seen.lua``;
see :mod:`flask_taskq.store.replay`):

- no record: the attempt starts here (recorded), unless it is a first delivery of a task
  that already has a final result (where the store sees results), which is a replay;
- the same attempt from the same stream entry: a redelivery after a crash, it runs again
  (at least once);
- the same attempt from another entry, or an earlier attempt: a replay. It is
  dead-lettered (``replayed: ...``) without a result and does not run.

The worker's own re-adds of a started message under a new entry id forget the record
first: ``Reject(requeue=True)`` (:func:`forget`) and the re-add of a message taken over
from a crashed worker (:func:`forget_redelivered`, which covers a rate-limit deferral or
a return on stop after a takeover). Retries carry attempt + 1. Operators' requeues
(dead letters, the dashboard's retry) forget the task's starts
(``ReplayStore.forget``). See docs/task-control.rst.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..broker import Delivery
from ..message import Message
from ..signing import SignedSerializer
from ..store.replay import ReplayStore, Start

if TYPE_CHECKING:
    from .consumer import Consumer

logger = logging.getLogger("flask_taskq.worker")

#: How long a start is remembered when TASKQ_RESULT_EXPIRES is 0 (results kept).
DEFAULT_WINDOW = 86400


def _start(delivery: Delivery, message: Message) -> Start:
    return Start(message.id, message.retries, delivery.queue, delivery.priority, delivery.entry_id)


class ReplayGuard:
    """The replay check of one consumer (one per worker process): on with signing only."""

    def __init__(
        self,
        store: ReplayStore,
        enabled: bool,
        window: int,
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.window = window
        #: The store's errors: on them a check lets the message run.
        self.errors = errors

    def check(self, delivery: Delivery, message: Message) -> str | None:
        """Record this start; return why it is a replay, or None when it may run."""
        return self.store.start(_start(delivery, message), self.window, delivery.deliveries <= 1)

    def forget(self, deliveries: Sequence[tuple[Delivery, Message]]) -> None:
        """Forget the recorded starts of these deliveries (only where the record is theirs)."""
        if deliveries:
            self.store.forget_starts([_start(d, m) for d, m in deliveries])


def guard_of(consumer: Consumer) -> ReplayGuard:
    """The consumer's replay guard, made on first use."""
    guard = consumer.__dict__.get("_replay_guard")
    if guard is None:
        store = consumer.store
        guard = consumer.__dict__["_replay_guard"] = ReplayGuard(
            store.replay,
            isinstance(consumer.serializer, SignedSerializer),
            int(consumer.result_ttl or DEFAULT_WINDOW),
            store.errors,
        )
    return guard


def refused(consumer: Consumer, delivery: Delivery, message: Message) -> bool:
    """Called just before ``message`` runs: True if it is a replayed signed body, which
    is then dead-lettered (no result written) and must not run. With signing off: False
    at no cost. When the store cannot be asked, the message runs (as a poison check does)."""
    guard = guard_of(consumer)
    if not guard.enabled:
        return False
    errors: tuple[type[BaseException], ...] = (*guard.errors, OSError)
    try:
        why = guard.check(delivery, message)
    except errors as exc:
        logger.warning("Could not check task %s for a replay (%s); running it", message.id, exc)
        return False
    if why is None:
        return False
    consumer.dead_letter(
        delivery,
        f"replayed: a copy of a signed message of task {message.id} ({why}); not run",
        message.task,
        message.id,
    )
    return True


def forget(consumer: Consumer, delivery: Delivery, message: Message) -> None:
    """Before the worker puts a started message back under a new entry id
    (``Reject(requeue=True)``): forget its start, so the copy is not taken for a replay.
    Connection errors propagate: then the message is not requeued either."""
    guard = guard_of(consumer)
    if not guard.enabled:
        return
    from .consumer import CONNECTION_ERRORS

    try:
        guard.forget([(delivery, message)])
    except CONNECTION_ERRORS:
        raise
    except guard.errors as exc:  # e.g. READONLY: requeue anyway, it may be refused
        logger.error("Could not reset the replay check of task %s (%s)", message.id, exc)


def forget_redelivered(consumer: Consumer, deliveries: Sequence[tuple[Delivery, Message]]) -> None:
    """On taking messages that were delivered before (they may have started on a worker
    that crashed): forget their starts, since this worker may hand them back under a new
    entry id (a rate-limit deferral, a return on stop). If it runs one, the start is
    recorded again. Best effort: a failure is logged."""
    guard = guard_of(consumer)
    if not guard.enabled:
        return
    again = [(d, m) for d, m in deliveries if d.deliveries > 1]
    if not again:
        return
    errors: tuple[type[BaseException], ...] = (*guard.errors, OSError)
    try:
        guard.forget(again)
    except errors as exc:
        logger.warning(
            "Could not reset the replay check of %d redelivered task(s) (%s)", len(again), exc
        )
