"""Unique tasks: the key a unique task holds is freed once it reaches a final state (or
is dead-lettered), so the same call can be sent again."""

from __future__ import annotations

from ... import states
from ..consumer import Consumer
from ..execute import Outcome
from .base import Context, Hook


class ReleaseUnique(Hook):
    """Frees the unique key of a finished task."""

    needs_headers = True

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        message = ctx.message
        if message.headers and (outcome.dead_reason or outcome.status in states.READY_STATES):
            self.consumer.release_unique(message)
        return True
