"""The replay guard of signed messages (``TASKQ_SIGNING_KEY``; see :mod:`..replay`): a
replayed signed body is dead-lettered and not run. Not in the plan without signing."""

from __future__ import annotations

from typing import Any

from .. import replay
from ..consumer import Consumer
from .base import Context, Hook


class ReplayGuard(Hook):
    """Records where each attempt starts; refuses a replay."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.enabled = replay.guard_of(consumer).enabled

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        return self.enabled

    def before(self, ctx: Context) -> bool:
        assert ctx.delivery is not None
        return not replay.refused(self.consumer, ctx.delivery, ctx.message)
