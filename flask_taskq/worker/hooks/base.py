"""The execution pipeline: a list of small ordered hooks around one ``execute()``.

Each concern (app context, signals, revocation, rate limits, retries, results, the next
workflow step...) is a :class:`Hook` in a module of its own; :class:`Pipeline` runs them
in order around the task's run. Per task, the pipeline keeps a :class:`Plan` of only the
hook methods that apply to it (a hook says so in :meth:`Hook.applies`), so a hook that
has nothing to do for a task costs it nothing.

For one message:

1. ``before(ctx)`` of each hook, in order. A hook returns False when it has settled the
   message itself (dead-lettered, deferred, refused): nothing else runs. A hook may
   also decide the outcome without running the task (``ctx.outcome``, e.g. revoked):
   the later ``before`` hooks and the run are skipped, the ``after`` hooks run.
2. ``execute(ctx)``: the task runs and its outcome is classified (success, failure,
   retry, rejection).
3. ``finish(ctx)`` of each hook whose ``before`` ran, in reverse order, even if the run
   raised (``finally``): popping the app context, ending time limits.
4. ``after(ctx, outcome)`` of each hook, in order, with the outcome. A hook returns
   False to stop there (e.g. a workflow step left undone: the message is not settled, so
   it is delivered again).
"""

from __future__ import annotations

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


class Hook:
    """One concern of running a task. Override what applies; a method not overridden is
    never called."""

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


class Pipeline:
    """Runs ``hooks`` in order around ``execute``."""

    def __init__(self, hooks: Sequence[Hook], execute: Callable[[Context], Outcome]) -> None:
        self.hooks = tuple(hooks)
        self.execute = execute
        self._plans: dict[str, Plan] = {}

    def plan(self, ctx: Context) -> Plan:
        """The plan of ``ctx``'s task (made once per task name)."""
        plan = self._plans.get(ctx.message.task)
        if plan is None:
            plan = self._plans[ctx.message.task] = self.make_plan(ctx.task, ctx.options)
        return plan

    def make_plan(self, task: Task | None, options: dict[str, Any]) -> Plan:
        """Keep the hooks that apply to ``task`` and the methods they define."""
        hooks = [h for h in self.hooks if h.applies(task, options)]
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
