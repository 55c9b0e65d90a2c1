"""What an operator does to a whole workflow (the dashboard's buttons, ``flask taskq
workflow``): revoke it, or run a failed one again from its failed steps.

Retrying reads the workflow as it was sent (kept beside its graph, see
:func:`flask_taskq.workflow_graph.load_canvas`) and the state of each task, then sends,
under the same task ids, only what did not succeed:

- in a chain, the first step that did not succeed, with the value of the step before
  (read from the result backend) as its first argument, followed by the steps after it;
- in a group, the members that did not succeed;
- in a chord whose header succeeded, the callback with the header's values; in a chord
  whose header did not, the header members that did not succeed, counted in a new chord
  (a fresh chord id) in which the values of the members that succeeded are recorded first,
  so the callback fires once, when the last re-run member finishes.

Tasks that succeeded are not run again. The re-run tasks' old results are forgotten first
(they show PENDING), which also makes a second retry of the same workflow refuse while the
first runs.

.. versionadded:: 0.2
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import states, workflow_graph
from .canvas import (
    HEADER_CHORD,
    Canvas,
    Signature,
    chain,
    chord,
    group,
    iter_signatures,
    send_next,
    signature,
)

if TYPE_CHECKING:
    from .state import AppState

__all__ = ["Retried", "WorkflowActionError", "retry", "revoke"]

#: States after which a task will not change by itself.
_FINISHED = states.READY_STATES


class WorkflowActionError(ValueError):
    """The action cannot be done (unknown workflow, still running, ...): one line."""


@dataclass
class Retried:
    """What :func:`retry` sent: the workflow id and the task ids that run again."""

    workflow_id: str
    task_ids: list[str] = field(default_factory=list)


def _document(state: AppState, any_id: str) -> dict[str, Any]:
    doc = workflow_graph.load(state, any_id)
    if doc is None:
        raise WorkflowActionError(
            f"no workflow {any_id!r}: unknown id, not part of a chain, group or chord, "
            "or its data expired with the results"
        )
    return doc


def revoke(state: AppState, any_id: str, terminate: bool = False) -> list[str]:
    """Revoke every task of the workflow ``any_id`` is part of that has not finished
    (with ``terminate``, running ones are stopped too). Returns the revoked task ids."""
    doc = workflow_graph.with_states(state, _document(state, any_id))
    ids = [n["id"] for n in workflow_graph.task_nodes(doc["tree"]) if n["state"] not in _FINISHED]
    if not ids:
        raise WorkflowActionError(f"workflow {doc['id']} has finished: nothing to revoke")
    state.revocations.revoke(ids, terminate=terminate)
    return ids


# -- retry ----------------------------------------------------------------------------------
@dataclass
class _Plan:
    """What a retry does, in order: record chord values, forget results, send."""

    found: dict[str, dict[str, Any]]
    chord_values: list[tuple[str, int, Any, int]] = field(default_factory=list)
    sends: list[tuple[Canvas, tuple[Any, ...]]] = field(default_factory=list)

    def status(self, task_id: str | None) -> str:
        meta = self.found.get(str(task_id)) or {}
        return str(meta.get("status") or states.PENDING)

    def done(self, flow: Canvas) -> bool:
        return all(self.status(s.id) == states.SUCCESS for s in iter_signatures(flow))

    def value(self, flow: Canvas) -> Any:
        """The value ``flow`` passed on when it succeeded."""
        if isinstance(flow, Signature):
            return (self.found.get(str(flow.id)) or {}).get("result")
        if isinstance(flow, group):
            return [self.value(t) for t in flow.tasks]
        if isinstance(flow, chain):
            return self.value(flow.tasks[-1])
        assert isinstance(flow, chord)
        return self.value(flow.body)


def _tail(flow: Canvas) -> Signature:
    """The task whose end is the end of ``flow``."""
    if isinstance(flow, Signature):
        return flow
    if isinstance(flow, chain):
        return _tail(flow.tasks[-1])
    if isinstance(flow, chord):
        return _tail(flow.body)
    raise WorkflowActionError("a group cannot be followed by anything but one task")


def _continued(first: Canvas, rest: list[Canvas], headers: dict[str, Any] | None) -> Canvas:
    """``first`` followed by ``rest``, with ``headers`` on the task that ends it all."""
    flow = chain(first, *rest).clone() if rest else first.clone()
    if headers:
        _tail(flow).add_headers(headers)
    return flow


def _callback(body: Canvas) -> Signature:
    """The task a chord sends with the members' values: the body's first task, linked to
    the rest of the body."""
    if isinstance(body, Signature):
        return body
    assert isinstance(body, chain)
    first = body.tasks[0]
    assert isinstance(first, Signature)
    rest = body.tasks[1:]
    if rest:
        first.link(rest[0] if len(rest) == 1 else chain(*rest))
    return first


def _plan(
    plan: _Plan,
    flow: Canvas,
    args: tuple[Any, ...],
    rest: list[Canvas],
    headers: dict[str, Any] | None,
    state: AppState,
) -> None:
    """Add to ``plan`` what runs ``flow`` (which did not all succeed) again from where it
    failed, entered with ``args``, followed by ``rest``, its end carrying ``headers``."""
    if isinstance(flow, Signature):
        plan.sends.append((_continued(flow, rest, headers), args))
    elif isinstance(flow, chain):
        steps = flow.tasks
        k = next(i for i, step in enumerate(steps) if not plan.done(step))
        entering = args if k == 0 else (plan.value(steps[k - 1]),)
        _plan(plan, steps[k], entering, [*steps[k + 1 :], *rest], headers, state)
    elif isinstance(flow, group):
        if rest:
            raise WorkflowActionError("a group cannot be followed by anything but one task")
        for member in flow.tasks:
            if not plan.done(member):
                _plan(plan, member, args, [], headers, state)
    else:
        assert isinstance(flow, chord)
        members = flow.header.tasks
        if all(plan.done(m) for m in members):
            values = [plan.value(m) for m in members]
            _plan(plan, flow.body, (values,), rest, headers, state)
            return
        chord_id = str(uuid.uuid4())
        callback = _callback(_continued(flow.body, rest, headers))
        for index, member in enumerate(members):
            if plan.done(member):
                plan.chord_values.append((chord_id, index, plan.value(member), len(members)))
                continue
            meta = {
                "id": chord_id,
                "size": len(members),
                "index": index,
                "callback": callback.to_dict(),
            }
            _plan(plan, member, args, [], {HEADER_CHORD: meta}, state)


def retry(state: AppState, any_id: str) -> Retried:
    """Run the failed workflow ``any_id`` is part of again from its failed steps (see the
    module's docstring). Refused (:class:`WorkflowActionError`) when it is unknown, was
    sent without its canvas kept, still runs, was revoked, or succeeded."""
    doc = workflow_graph.with_states(state, _document(state, any_id))
    tasks = workflow_graph.task_nodes(doc["tree"])
    unfinished = [n for n in tasks if n["state"] not in _FINISHED]
    if unfinished:
        raise WorkflowActionError(
            f"workflow {doc['id']} has not finished ({len(unfinished)} task(s) waiting or "
            "running, or their results expired): retry it once it failed"
        )
    if any(n["state"] == states.REVOKED for n in tasks):
        raise WorkflowActionError(
            f"workflow {doc['id']} was revoked: launch it again instead of retrying it"
        )
    if all(n["state"] == states.SUCCESS for n in tasks):
        raise WorkflowActionError(f"workflow {doc['id']} succeeded: nothing to retry")
    data = workflow_graph.load_canvas(state, doc["id"])
    if data is None:
        raise WorkflowActionError(
            f"workflow {doc['id']} cannot be retried: it was sent without its arguments "
            "kept (by an older flask-taskq, or they could not be encoded)"
        )
    flow = signature(data)
    plan = _Plan(workflow_graph.task_states(state, (n["id"] for n in tasks)))
    _plan(plan, flow, (), [], None, state)
    rerun = list(
        dict.fromkeys(
            str(s.id)
            for sent, _ in plan.sends
            for s in _all_signatures(sent)
            if plan.status(s.id) != states.SUCCESS
        )
    )
    ttl = state.result_expires or 0
    for chord_id, index, value, size in plan.chord_values:
        state.store.workflows.chord_member_done(
            chord_id, index, state.serializer.dumps(value), size, ttl
        )
    if state.backend is not None:
        for task_id in rerun:
            state.backend.forget(task_id)
    state.store.replay.forget(rerun)  # the same ids again, on purpose: not a replay
    for sent, args in plan.sends:
        send_next(sent.to_dict(), args, state.app)
    return Retried(str(doc["id"]), rerun)


def _all_signatures(flow: Canvas) -> list[Signature]:
    """Every task ``flow`` runs: its own, those it links to and chord callbacks."""
    found: list[Signature] = []
    for sig in iter_signatures(flow):
        found.append(sig)
        for linked in sig.options.get("link", ()):
            found.extend(_all_signatures(signature(linked)))
        meta = (sig.options.get("headers") or {}).get(HEADER_CHORD)
        if meta:
            found.extend(_all_signatures(signature(meta["callback"])))
    return found
