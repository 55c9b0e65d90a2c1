"""Settling a message with its outcome: its result and ack (or its next attempt, for a
retry) go out in the consumer's batch, with the heartbeat's counters; a message that
cannot succeed goes to the dead letters; ``Reject(requeue=True)`` puts it back as it is.
In eager mode the result is stored at once and a retry runs next."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from ... import states
from .. import replay
from ..consumer import CONNECTION_ERRORS, Consumer
from ..execute import Outcome
from .base import Context, Hook

if TYPE_CHECKING:
    from ...message import Message
    from ...state import AppState

logger = logging.getLogger("flask_taskq.worker")


class Settle(Hook):
    """The worker's: complete, dead-letter or requeue through the consumer."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        consumer, message, delivery = self.consumer, ctx.message, ctx.delivery
        assert delivery is not None
        try:
            if outcome.dead_reason:
                consumer.count(message.queue, message.task, outcome.status, outcome.runtime)
                consumer.dead_letter(
                    delivery,
                    outcome.dead_reason,
                    message.task,
                    message.id,
                    outcome.data,
                    outcome.traceback,
                )
            elif outcome.requeue:
                replay.forget(consumer, delivery, message)
                consumer.requeue(delivery)
            else:
                consumer.complete(
                    delivery,
                    message.id,
                    outcome.status,
                    outcome.data,
                    outcome.runtime,
                    outcome.retry,
                    message.task,
                    ctx.sends,
                )
        except CONNECTION_ERRORS as exc:
            logger.warning("Could not record task %s (%s); it will run again", message.id, exc)
        return True


class Resubmit(Protocol):
    """Where eager mode sends a message to run next."""

    def __call__(self, message: Message, body: bytes) -> object: ...


class EagerResults(Hook):
    """Eager mode's: the result goes to the (memory) backend; a retry runs at once."""

    def __init__(self, state: AppState, resubmit: Resubmit) -> None:
        self.state = state
        self.resubmit = resubmit

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        if outcome.retry is not None:  # eager retries run at once, as in Celery
            self.resubmit(ctx.message, outcome.retry[0])
            return True
        backend = self.state.backend
        assert backend is not None and outcome.data is not None
        backend.store_many(
            [(ctx.message.id, outcome.data, outcome.status in states.READY_STATES)],
            self.state.result_expires,
        )
        return True
