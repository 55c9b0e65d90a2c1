"""The hooks of the execution pipeline, one concern per module, and the two pipelines
built from them (see :mod:`.base` for how hooks run).

The worker's order (a message goes top to bottom)::

    before   signals.Received      task_received
             poison.Poison         dead-letter a message that keeps killing workers
             ratelimit.RateLimit   defer until a token is free
             concurrency.Concurrency  take a slot of the call's key, or park it (finish: free)
             replay.ReplayGuard    refuse a replayed signed message (signing only)
             tracing.Tracing       OpenTelemetry run span (installed only; after: end)
             running.Running       time limits, terminate, busy flag (finish: disarm)
             revocation.Revocation revoked or expired: REVOKED, not run
             started.Started       STARTED, written with the next batch (track_started)
             appcontext.AppContext app context and request (finish: pop)
             signals.RunSignals    task_prerun (finish: task_postrun)
             events.Events         task-started (after: succeeded, failed...; -E only)
    execute  Executor.execute      run; classify (success, failure, retry, reject)
    after    workflow.Workflow     links, chains, chords (undone: not settled)
             results.Settle        result + ack / next attempt / dead letter / requeue
             unique.ReleaseUnique  free the unique key

Eager mode keeps tracing, revocation (expiry), app context, run signals, workflow (on
its own memory store, sending to the eager runner) and stores results with
``results.EagerResults``. A new feature is a new hook module, placed in this order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..execute import Executor
from .appcontext import AppContext
from .base import Context, Hook, Pipeline, Plan
from .concurrency import Concurrency
from .events import event_hooks
from .poison import Poison
from .ratelimit import RateLimit
from .replay import ReplayGuard
from .results import EagerResults, Resubmit, Settle
from .revocation import Revocation
from .running import Running
from .signals import Received, RunSignals
from .started import Started
from .tracing import tracing_hooks
from .unique import ReleaseUnique
from .workflow import Workflow

if TYPE_CHECKING:
    import mmap

    from ...message import Message
    from ...state import AppState
    from ...store.workflows import WorkflowStore
    from ..consumer import Consumer

__all__ = ["Context", "Hook", "Pipeline", "Plan", "eager_pipeline", "worker_pipeline"]


def worker_pipeline(
    state: AppState,
    consumer: Consumer,
    executor: Executor,
    busy: mmap.mmap | None = None,
    slot: int = 0,
) -> Pipeline:
    """The pipeline of a worker's consumer."""
    hooks: list[Hook] = [
        Received(),
        Poison(consumer),
        RateLimit(consumer),
        Concurrency(consumer, executor),
        ReplayGuard(consumer),
        *tracing_hooks(),
        Running(consumer.guard, busy, slot),
        Revocation(executor, consumer.revocations.ids),
        Started(consumer),
        AppContext(state.app),
        RunSignals(),
        *event_hooks(state, consumer),
        Workflow(state, consumer.stopping, consumer=consumer),
        Settle(consumer),
        ReleaseUnique(consumer),
    ]
    pipeline = Pipeline(hooks, executor.execute)
    consumer.on_overrides_changed = pipeline.reset
    return pipeline


def eager_pipeline(
    state: AppState,
    executor: Executor,
    workflows: WorkflowStore,
    submit: Callable[[Message, bytes], object],
    resubmit: Resubmit,
    deferring: Callable[[Hook], Hook] = lambda hook: hook,
) -> Pipeline:
    """The pipeline of eager mode (``TASKQ_ALWAYS_EAGER``): no transport, so nothing to
    lease, limit or acknowledge. ``deferring`` wraps the workflow hook so that what it
    sends runs after the task, not inside the hook."""
    hooks: list[Hook] = [
        *tracing_hooks(),
        Revocation(executor),
        AppContext(state.app),
        RunSignals(),
        deferring(Workflow(state, None, workflows, submit)),
        EagerResults(state, resubmit),
    ]
    return Pipeline(hooks, executor.execute)
