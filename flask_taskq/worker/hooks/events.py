"""Task events (``TASKQ_EVENTS`` or ``flask taskq worker -E``): ``task-started`` before
the run, then what became of it (see :mod:`flask_taskq.events`). In the pipeline only
when events are on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ... import events, states
from ..execute import Outcome
from .base import Context, Hook

if TYPE_CHECKING:
    from ...state import AppState
    from ..consumer import Consumer


class Events(Hook):
    """Publishes a task's events through the worker process's publisher."""

    def __init__(self, publisher: events.EventPublisher) -> None:
        self.emit = publisher.emit

    def before(self, ctx: Context) -> bool:
        m = ctx.message
        self.emit("task-started", m.id, m.task, m.queue, retries=m.retries)
        return True

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        m, status, emit = ctx.message, outcome.status, self.emit
        if outcome.requeue:
            return True  # back in its queue as it was: it starts again later
        runtime = f"{outcome.runtime:.6f}"
        if status == states.SUCCESS:
            emit("task-succeeded", m.id, m.task, m.queue, retries=m.retries, runtime=runtime)
        elif status == states.RETRY:
            due = outcome.retry[1] if outcome.retry is not None else None
            emit(
                "task-retried",
                m.id,
                m.task,
                m.queue,
                retries=m.retries,
                exception=_describe(outcome.exception),
                eta=None if due is None else f"{due:.6f}",
            )
        elif status == states.REVOKED:
            expired = m.expires is not None and time.time() > m.expires
            emit(
                "task-revoked",
                m.id,
                m.task,
                m.queue,
                retries=m.retries,
                reason="expired" if expired else "revoked",
            )
        else:
            emit(
                "task-failed",
                m.id,
                m.task,
                m.queue,
                retries=m.retries,
                runtime=runtime,
                exception=_describe(outcome.exception),
            )
        return True


def event_hooks(state: AppState, consumer: Consumer) -> list[Hook]:
    """``[Events(...)]`` publishing to the consumer's store when ``state``'s app has
    events on, else nothing."""
    if not events.enabled(state):
        return []
    publisher = events.publisher(consumer.store.events, state, consumer.name)
    consumer.emit = publisher.emit  # dead letters and hard time limits: see Consumer
    return [Events(publisher)]


def _describe(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:499] + "…"
