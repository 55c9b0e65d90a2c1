"""Eager mode (``TASKQ_ALWAYS_EAGER``): ``.delay()`` runs the task inline through the same
pipeline a worker uses (:mod:`.hooks`), with what follows it (links, chain steps, a
chord's callback, a retry) run before it returns.

What the workflow hook sends is queued, not run inside the hook, and runs right after
the task (depth first: what a task leads to runs before what was sent earlier), so a
chain of any length needs no deep recursion. A ``.delay()`` inside a task's body runs at
once, as it always did. Chord bookkeeping uses a memory store of the runner's own: eager
mode never touches the app's broker or store.
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import TYPE_CHECKING

from ..message import Message
from ..store.memory import MemoryStore
from .execute import Executor, Outcome
from .hooks import Context, Hook, eager_pipeline

if TYPE_CHECKING:
    from ..state import AppState

_runners: weakref.WeakKeyDictionary[AppState, EagerRunner] = weakref.WeakKeyDictionary()
_runners_lock = threading.Lock()


class _Deferring(Hook):
    """Wraps a hook: what it sends while it runs is queued by the runner."""

    def __init__(self, inner: Hook, local: threading.local) -> None:
        self.inner = inner
        self.local = local
        self.needs_headers = inner.needs_headers

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        local = self.local
        local.collecting = True
        try:
            return self.inner.after(ctx, outcome)
        finally:
            local.collecting = False


class EagerRunner:
    """Runs messages inline for one app."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.store = MemoryStore()
        self._local = threading.local()
        self.pipeline = eager_pipeline(
            state,
            Executor(state),
            self.store.workflows,
            self.submit,
            self._defer,
            lambda hook: _Deferring(hook, self._local),
        )

    def _defer(self, message: Message, body: bytes) -> str:
        self._local.pending.append(body)
        return message.id

    def submit(self, message: Message, body: bytes) -> str:
        """Run ``body`` and what it leads to now; from the workflow hook, queue it to run
        after the current task."""
        local = self._local
        if getattr(local, "collecting", False):
            return self._defer(message, body)
        outer = getattr(local, "pending", None)
        pending: list[bytes] = []
        local.pending = pending
        todo = collections.deque([body])
        try:
            while todo:
                self._run(todo.popleft())
                if pending:
                    todo.extendleft(reversed(pending))
                    pending.clear()
        finally:
            local.pending = outer
        return message.id

    def _run(self, body: bytes) -> None:
        state = self.state
        message = Message.from_bytes(body, state.serializer)
        task = state.taskqueue.tasks.get(message.task)
        options = task.options_for(state) if task is not None else state.task_defaults
        self.pipeline.process(Context(message, None, task, options, eager=True))


def runner(state: AppState) -> EagerRunner:
    """The eager runner of ``state`` (made on first use)."""
    found = _runners.get(state)
    if found is None:
        with _runners_lock:
            found = _runners.get(state)
            if found is None:
                found = _runners[state] = EagerRunner(state)
    return found


def run_eager(state: AppState, message: Message, body: bytes) -> None:
    """Run ``message`` (encoded as ``body``) inline with all it leads to."""
    runner(state).submit(message, body)
