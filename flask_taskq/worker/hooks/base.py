"""The execution pipeline: a list of small ordered hooks around one ``execute()``.

Each concern (app context, signals, revocation, rate limits, retries, results, the next
workflow step...) is a :class:`Hook` in a module of its own; :class:`Pipeline` runs them
in order around the task's run. Per task, the pipeline keeps a :class:`Plan` of only the
hook methods that apply to it (a hook says so in :meth:`Hook.applies`, and with
:attr:`Hook.needs_headers` / :attr:`Hook.needs_redelivery` for the message's shape), so
a hook that has nothing to do for a task costs it nothing.

For one message:

1. ``before(ctx)`` of each hook, in order. A hook returns False when it has settled the
   message itself (dead-lettered, deferred, refused): nothing else runs. A hook may
   also decide the outcome without running the task (``ctx.outcome``, e.g. revoked):
   the later ``before`` hooks and the run are skipped, the ``after`` hooks run.
2. ``execute(ctx)``: the task runs and its outcome is classified (success, failure,
   retry, rejection). For an ``async def`` task the worker's ``execute`` hands the
   coroutine to the event loop and returns None: :meth:`Pipeline.process` returns there,
   and :meth:`Pipeline.resume` does steps 3 and 4 once the coroutine has ended.
3. ``finish(ctx)`` of each hook whose ``before`` ran, in reverse order, even if the run
   raised (``finally``): popping the app context, ending time limits.
4. ``after(ctx, outcome)`` of each hook, in order, with the outcome. A hook returns
   False to stop there (e.g. a workflow step left undone: the message is not settled, so
   it is delivered again).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask.ctx import AppContext

    from ...broker import Delivery
    from ...message import Message
    from ...task import Request, Task
    from ..execute import Outcome


@dataclass(slots=True)
class Context:
    """One message going through the pipeline."""

    message: Message
    #: Where it came from (None in eager mode: there is no transport).
    delivery: Delivery | None
    #: The registered task (None when this worker does not know it).
    task: Task | None
    #: The task's options for this app (empty when the task is unknown).
    options: dict[str, Any]
    eager: bool = False
    #: What ``self.request`` says while it runs (set by the app-context hook).
    request: Request | None = None
    #: Set by ``execute()``, or by a ``before`` hook that decided without running it.
    outcome: Outcome | None = None
    #: The exception the task raised (popping the app context passes it on).
    error: BaseException | None = None
    #: What the task returned.
    retval: Any = None
    #: Scratch space of the app-context hook (its context and request token).
    app_context: AppContext | None = None
    request_token: Any = None
    #: A run handed off by ``execute`` (an ``async def`` task): the plan and how many
    #: ``before`` hooks ran, for :meth:`Pipeline.resume`.
    suspended: tuple[Plan, int] | None = None
    #: Messages the workflow hook left to go out with the acknowledgement:
    #: (queue, priority, body), see ``Consumer.deferring_sends``.
    sends: list[tuple[str, int, bytes]] | None = None


class Hook:
    """One concern of running a task. Override what applies; a method not overridden is
    never called."""

    #: Only for messages with headers (workflow steps, unique keys): left out of the
    #: plan of a message without any.
    needs_headers = False
    #: Only for messages delivered before (poison counting): left out of the plan of a
    #: first delivery.
    needs_redelivery = False

    def applies(self, task: Task | None, options: dict[str, Any]) -> bool:
        """Whether this hook has anything to do for ``task`` (asked once per task)."""
        return True

    def before(self, ctx: Context) -> bool:
        """Before the run; False when this hook settled the message (nothing else runs)."""
        return True

    def finish(self, ctx: Context) -> None:
        """After the run, also when it raised; only if :meth:`before` ran."""

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        """After the run, with its outcome; False stops the hooks after this one."""
        return True


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


@dataclass(slots=True, frozen=True)
class Plan:
    """The hook methods that apply to one task, in the order they run."""

    before: tuple[Callable[[Context], bool], ...]
    #: Aligned with :attr:`before`: what to call when unwinding (None: nothing).
    finish: tuple[Callable[[Context], None] | None, ...]
    after: tuple[Callable[[Context, Outcome], bool], ...]


#: Every pipeline of this process, so that :func:`reset_plans` reaches them.
_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


def reset_plans() -> None:
    """Make every pipeline plan again: what a hook's :meth:`~Hook.applies` depends on
    changed (e.g. a receiver was connected to a signal)."""
    for pipeline in list(_pipelines):
        pipeline.reset()


class Pipeline:
    """Runs ``hooks`` in order around ``execute``."""

    def __init__(self, hooks: Sequence[Hook], execute: Callable[[Context], Outcome | None]) -> None:
        self.hooks = tuple(hooks)
        self.execute = execute
        #: Plans by task name, one dict per message shape (:meth:`plan`).
        self._plans: tuple[dict[str, Plan], ...] = ({}, {}, {}, {})
        _pipelines.add(self)

    def reset(self) -> None:
        """Forget the plans made so far (thread-safe: one assignment)."""
        self._plans = ({}, {}, {}, {})

    def plan(self, ctx: Context) -> Plan:
        """The plan of ``ctx``'s task for a message of its shape (with headers or not,
        redelivered or not); made once per task name and shape."""
        message, delivery = ctx.message, ctx.delivery
        shape = (1 if message.headers else 0) | (
            2 if delivery is not None and delivery.deliveries > 1 else 0
        )
        plans = self._plans[shape]
        plan = plans.get(message.task)
        if plan is None:
            plan = plans[message.task] = self.make_plan(
                ctx.task, ctx.options, bool(shape & 1), bool(shape & 2)
            )
        return plan

    def make_plan(
        self,
        task: Task | None,
        options: dict[str, Any],
        headers: bool = True,
        redelivered: bool = True,
    ) -> Plan:
        """Keep the hooks that apply to ``task`` (and to a message with ``headers``,
        ``redelivered``) and the methods they define."""
        hooks = [
            h
            for h in self.hooks
            if (headers or not h.needs_headers)
            and (redelivered or not h.needs_redelivery)
            and h.applies(task, options)
        ]
        around = [h for h in hooks if _overrides(h, "before") or _overrides(h, "finish")]
        return Plan(
            tuple(h.before for h in around),
            tuple(h.finish if _overrides(h, "finish") else None for h in around),
            tuple(h.after for h in hooks if _overrides(h, "after")),
        )

    def process(self, ctx: Context) -> bool:
        """Run ``ctx``'s message through the hooks; False if a hook stopped it (the
        message was settled by a ``before`` hook, or left unsettled by an ``after``
        hook)."""
        plan = self.plan(ctx)
        finish = plan.finish
        entered = 0
        try:
            for before in plan.before:
                if not before(ctx):
                    return False
                entered += 1
                if ctx.outcome is not None:
                    break
            if ctx.outcome is None:
                ctx.outcome = self.execute(ctx)
                if ctx.outcome is None:  # handed off (async def): resume() ends it
                    ctx.suspended, entered = (plan, entered), 0
                    return True
        finally:
            for i in range(entered - 1, -1, -1):
                done = finish[i]
                if done is not None:
                    done(ctx)
        outcome = ctx.outcome
        for after in plan.after:  # noqa: SIM110 - a plain loop: no generator per message
            if not after(ctx, outcome):
                return False
        return True

    def resume(self, ctx: Context, conclude: Callable[[Context], Outcome]) -> bool:
        """End a run that ``execute`` handed off: ``conclude(ctx)`` gives its outcome,
        then the ``finish`` and ``after`` steps run as in :meth:`process` (call it in the
        contextvars context the ``before`` hooks ran in)."""
        assert ctx.suspended is not None
        plan, entered = ctx.suspended
        ctx.suspended = None
        finish = plan.finish
        try:
            ctx.outcome = conclude(ctx)
        finally:
            for i in range(entered - 1, -1, -1):
                done = finish[i]
                if done is not None:
                    done(ctx)
        outcome = ctx.outcome
        for after in plan.after:  # noqa: SIM110 - as in process()
            if not after(ctx, outcome):
                return False
        return True
