"""The next workflow step (links, chains, chords; see :mod:`..workflow`), before the
message is settled: a step left undone (the store was away until the worker stopped)
stops the pipeline, so the message is not acknowledged and is delivered again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...states import SUCCESS
from .base import Context, Hook

if TYPE_CHECKING:
    from ...message import Message
    from ...state import AppState
    from ...store.workflows import WorkflowStore
    from ..consumer import Consumer
    from ..execute import Outcome


class Workflow(Hook):
    """Sends what follows a task of a workflow once its outcome is final. ``workflows``
    and ``enqueue`` replace the app's store and transport (eager mode). With a
    ``consumer``, a succeeded task's plain link sends may go out with its
    acknowledgement (:meth:`Consumer.deferring_sends`)."""

    needs_headers = True

    def __init__(
        self,
        state: AppState,
        stopping: threading.Event | None,
        workflows: WorkflowStore | None = None,
        enqueue: Callable[[Message, bytes], object] | None = None,
        consumer: Consumer | None = None,
    ) -> None:
        self.state = state
        self.stopping = stopping
        self.workflows = workflows
        self.enqueue = enqueue
        self.consumer = consumer

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        headers = ctx.message.headers
        if not headers:
            return True
        # the workflow code is loaded by the first message with headers, not at start
        from ...canvas import WORKFLOW_HEADERS
        from ..workflow import after_task

        if WORKFLOW_HEADERS.isdisjoint(headers):
            return True
        deferring = None
        consumer = self.consumer
        if (
            consumer is not None
            and outcome.status == SUCCESS
            and outcome.dead_reason is None
            and not outcome.requeue
            and outcome.retry is None
        ):
            deferring = consumer.deferring_sends()  # the Settle hook completes it next
        sink, kept = deferring or (None, None)
        done = after_task(
            self.state, ctx.message, outcome, self.stopping, self.workflows, self.enqueue, sink
        )
        ctx.sends = kept or None
        return done
