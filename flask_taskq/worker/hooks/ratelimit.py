"""Rate limits (``rate_limit`` and run-time overrides): take a token, or hand the message
back to the transport until one is free."""

from __future__ import annotations

import time
from typing import Any

from ..consumer import REDIS_ERRORS, Consumer
from .base import Context, Hook


class RateLimit(Hook):
    """Defers a message whose task is over its rate."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.limiter = consumer.limiter

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        """For a task with a ``rate_limit``, or any while run-time overrides exist (the
        consumer re-plans when they appear)."""
        return (
            task is not None
            and self.limiter is not None
            and bool(options.get("rate_limit") or self.limiter.has_overrides)
        )

    def before(self, ctx: Context) -> bool:
        limiter = self.limiter
        rate_limit = ctx.options.get("rate_limit")
        if not rate_limit and not limiter.has_overrides:
            return True
        name = ctx.message.task
        try:
            rate = limiter.effective_rate(name, rate_limit)
            if rate is None:
                return True
            wait = limiter.acquire(name, rate, task_id=ctx.message.id)
        except REDIS_ERRORS:
            wait = 1.0
        if wait > 0:
            assert ctx.delivery is not None
            self.consumer.defer(ctx.delivery, time.time() + wait)
            return False
        return True
