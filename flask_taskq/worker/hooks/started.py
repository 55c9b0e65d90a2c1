"""The STARTED state (``track_started``, ``TASKQ_TRACK_STARTED``): noted as a task starts,
written with the consumer's next batch of results, so it costs no round trip of its own
and nothing at all for a task that finishes before that batch goes out."""

from __future__ import annotations

from typing import Any

from ..consumer import Consumer
from .base import Context, Hook


class Started(Hook):
    """Notes the start of tasks that track it and store results."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        return (
            task is not None
            and self.consumer.backend is not None
            and bool(options.get("track_started"))
            and not options.get("ignore_result")
        )

    def before(self, ctx: Context) -> bool:
        self.consumer.note_started(ctx.message.id, ctx.message.task)
        return True
