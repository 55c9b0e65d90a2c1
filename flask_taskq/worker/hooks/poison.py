"""Poison messages: a message started ``TASKQ_MAX_DELIVERIES`` times without finishing
(its worker crashed each time) is dead-lettered instead of run again
(:meth:`~..consumer.Consumer.is_poison`). First deliveries cost nothing."""

from __future__ import annotations

from ..consumer import REDIS_ERRORS, Consumer
from .base import Context, Hook


class Poison(Hook):
    """Counts the start of a redelivered message; dead-letters a poison one."""

    needs_redelivery = True

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def before(self, ctx: Context) -> bool:
        delivery = ctx.delivery
        assert delivery is not None
        if delivery.deliveries > 1:
            try:
                if self.consumer.is_poison(delivery, ctx.message):
                    return False
            except REDIS_ERRORS:
                pass  # cannot count this start: run it; the next delivery counts again
        return True
