"""OpenTelemetry: the task runs in a ``run <task>`` span whose parent is the span that
sent it (the ``traceparent`` in the message's headers; see :mod:`flask_taskq.tracing`).
In the pipeline only when ``opentelemetry-api`` is installed, and planned for a task only
once the app has set a tracer provider."""

from __future__ import annotations

from typing import Any

from ... import states, tracing
from ..execute import Outcome
from .base import Context, Hook


class Tracing(Hook):
    """Starts the run span before the run (current while the task runs, so its own spans
    and the tasks it sends are its children); ends it with the outcome."""

    def __init__(self) -> None:
        #: Spans in flight: id of the pipeline context -> (span, context token).
        self._spans: dict[int, tuple[Any, Any]] = {}

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        # Asked once per task: with no tracer provider set (yet), no cost per task.
        return tracing.configured()

    def before(self, ctx: Context) -> bool:
        self._spans[id(ctx)] = tracing.start_run(ctx.message, ctx.eager)
        return True

    def finish(self, ctx: Context) -> None:
        span, token = self._spans[id(ctx)]
        tracing.leave(token)
        if ctx.outcome is None:  # settled before it ran (deferred, refused) or a hook raised
            del self._spans[id(ctx)]
            tracing.end_run(span, "NOT_RUN", ctx.error)

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        entry = self._spans.pop(id(ctx), None)
        if entry is not None:
            status = outcome.status
            if outcome.dead_reason:
                status = states.FAILURE
            elif outcome.requeue:
                status = "REQUEUED"
            if not ctx.eager:  # what the worker sends next for it continues the trace
                tracing.settling(entry[0])
            tracing.end_run(entry[0], status, outcome.exception)
        return True


def tracing_hooks() -> list[Hook]:
    """``[Tracing()]`` when OpenTelemetry is installed, else nothing."""
    return [Tracing()] if tracing.ENABLED else []
