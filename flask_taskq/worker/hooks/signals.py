"""Signals around a run: ``task_received`` when a worker takes a message, ``task_prerun``
and ``task_postrun`` around the task (inside its app context). The outcome's own signals
(``task_success``, ``task_failure``, ``task_retry``, ``task_revoked``) are sent where the
outcome is decided (:mod:`..execute`).

These hooks are in a task's plan only while their signals have receivers: connecting a
receiver makes every pipeline plan again (:func:`.base.reset_plans`)."""

from __future__ import annotations

from ... import signals, states
from ..execute import Outcome
from .base import Context, Hook, reset_plans


class Received(Hook):
    """``task_received``, before anything else looks at the message (worker only)."""

    def applies(self, task: object, options: object) -> bool:
        return bool(signals.task_received.receivers)

    def before(self, ctx: Context) -> bool:
        if signals.task_received.receivers:
            assert ctx.delivery is not None
            signals.send_safely(
                signals.task_received,
                ctx.task or ctx.message.task,
                task=ctx.task,
                task_id=ctx.message.id,
                message=ctx.message,
                delivery_count=ctx.delivery.deliveries,
            )
        return True


class RunSignals(Hook):
    """``task_prerun`` just before the task runs, ``task_postrun`` just after (not when a
    revocation terminated it)."""

    def applies(self, task: object, options: object) -> bool:
        return task is not None and bool(
            signals.task_prerun.receivers or signals.task_postrun.receivers
        )

    def before(self, ctx: Context) -> bool:
        if signals.task_prerun.receivers:
            message = ctx.message
            signals.send_safely(
                signals.task_prerun,
                ctx.task,
                task_id=message.id,
                task=ctx.task,
                args=message.args,
                kwargs=message.kwargs,
            )
        return True

    def finish(self, ctx: Context) -> None:
        outcome: Outcome | None = ctx.outcome
        if (
            signals.task_postrun.receivers
            and outcome is not None
            and outcome.status != states.REVOKED
        ):
            message = ctx.message
            signals.send_safely(
                signals.task_postrun,
                ctx.task,
                task_id=message.id,
                task=ctx.task,
                args=message.args,
                kwargs=message.kwargs,
                retval=ctx.error or ctx.retval,
                state=outcome.status,
            )


def _receivers_changed(signal: object, **kwargs: object) -> None:
    reset_plans()


for _signal in (signals.task_received, signals.task_prerun, signals.task_postrun):
    _signal.receiver_connected.connect(_receivers_changed, weak=False)
