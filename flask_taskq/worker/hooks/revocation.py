"""Revocation and expiry: a message revoked (``revoke()``) or past its ``expires`` is not
run; its outcome is REVOKED (the after hooks still run: result, workflow, ack).
``revoke(terminate=True)`` of a running task is the keeper's (:mod:`..guard`)."""

from __future__ import annotations

import time
from collections.abc import Container
from typing import Any

from ..execute import Executor
from .base import Context, Hook


class Revocation(Hook):
    """Decides REVOKED before the run for expired or revoked messages."""

    def __init__(self, executor: Executor, revoked: Container[str] = ()) -> None:
        self.executor = executor
        #: Ids revoked (kept in sync by the consumer); empty in eager mode.
        self.revoked = revoked

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        return task is not None

    def before(self, ctx: Context) -> bool:
        message = ctx.message
        if message.expires is not None and time.time() > message.expires:
            ctx.outcome = self.executor.revoked(
                ctx, f"expired at {message.expires:.3f}", expired=True
            )
        elif message.id in self.revoked:
            ctx.outcome = self.executor.revoked(ctx, "revoked")
        return True
