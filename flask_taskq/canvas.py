"""Workflows (canvas): signatures, ``chain``, ``group``, ``chord`` and ``GroupResult``.

A signature is a task call that has not been sent: a task name, arguments and sending
options. Every canvas object is a plain ``dict`` underneath (key ``kind`` says which), so
it travels inside messages as it is and :func:`signature` rebuilds it on the other side.

What happens next travels in the message headers and is acted on by the worker after the
task's outcome is final (``flask_taskq/worker/workflow.py``):

- ``taskq_link``: canvas dicts sent when the task succeeds, its value prepended to their
  arguments (unless immutable); for a chain of more than :data:`CHAIN_INLINE` tasks, the
  steps after the first are kept in the store once (``WorkflowStore.save_chain``) and a
  link is a reference ``{"kind": "chain_rest", "chain", "at", "size"}`` to the next one,
  so that a message does not carry every step after it (which made a link cost grow
  with the chain's length);
- ``taskq_link_error``: canvas dicts sent when it fails, with the failed task's id;
- ``taskq_chord``: ``{"id", "size", "index", "callback"}`` for a member of a chord header;
- ``taskq_workflow``: the id of the workflow the task belongs to (informative only).

Sending a chain, group or chord (:meth:`Canvas.apply_async`) first fixes every task id,
records the workflow's shape in the store (``flask_taskq/workflow_graph.py``), then sends.
What the worker sends later (:func:`send_next`) is never recorded again. In eager mode
nothing is recorded and the same worker hook runs each step inline
(``flask_taskq/worker/eager.py``).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import states
from .exceptions import TimeoutError as TaskTimeoutError
from .result import AsyncResult

if TYPE_CHECKING:
    from flask import Flask

    from .backend import ResultBackend
    from .state import AppState
    from .task import Task

HEADER_LINK = "taskq_link"
HEADER_LINK_ERROR = "taskq_link_error"
HEADER_CHORD = "taskq_chord"
#: Informative header: the id of the workflow (see ``workflow_graph.py``) a task is in.
HEADER_WORKFLOW = "taskq_workflow"
#: The headers that make the worker call the workflow hook.
WORKFLOW_HEADERS = frozenset({HEADER_LINK, HEADER_LINK_ERROR, HEADER_CHORD})

#: Chains of up to this many tasks carry the steps after each in its message; longer
#: ones keep them in the store and link by reference (``chain_rest``).
CHAIN_INLINE = 8
#: ``kind`` of a link that names the next step of a chain kept in the store.
CHAIN_REST = "chain_rest"
#: How long a chain's steps are kept when results never expire (seconds).
CHAIN_TTL = 7 * 24 * 3600


class ChainExpired(LookupError):
    """The steps of a chain kept in the store were gone (expired) when the worker went
    to send the next one.

    .. versionadded:: 0.2
    """


#: Sending options a signature may carry (see :meth:`TaskQueue.send_task`).
SIGNATURE_OPTIONS = frozenset(
    {"queue", "countdown", "eta", "expires", "priority", "task_id", "headers", "link", "link_error"}
)


class ChordError(Exception):
    """A chord failed because one of its members failed; the message names the member.

    .. versionadded:: 0.2
    """


def _plain(value: Any) -> Any:
    """``value`` with canvas objects turned into plain dicts and tuples into lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return list(value)


def link_headers(link: Any, link_error: Any) -> dict[str, Any]:
    """The headers carrying ``link`` / ``link_error`` (a canvas object or a list)."""
    headers: dict[str, Any] = {}
    if link is not None:
        headers[HEADER_LINK] = [_plain(signature(s)) for s in _as_list(link)]
    if link_error is not None:
        headers[HEADER_LINK_ERROR] = [_plain(signature(s)) for s in _as_list(link_error)]
    return headers


def _state(app: Flask | None) -> AppState:
    from .state import resolve_state

    return resolve_state(app)


class Canvas(dict[str, Any]):
    """What every canvas object shares: ``|``, ``delay``, ``to_dict`` and cloning."""

    kind = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data the serializer can encode; :func:`signature` rebuilds it."""
        plain: dict[str, Any] = _plain(self)
        return plain

    def clone(self) -> Canvas:
        """An independent copy (options and nested signatures included)."""
        twin: Canvas = signature(copy.deepcopy(self.to_dict()))
        return twin

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send it with extra arguments (see :meth:`apply_async`)."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
        **options: Any,
    ) -> Any:
        """Send the workflow: fix every task id, record its shape (see
        :func:`flask_taskq.workflow_graph.record`) and send its first tasks; in eager mode
        it runs inline (nothing recorded). ``args`` are prepended to the first task's
        (each member's for a group or a chord's header). Returns the handle of its result."""
        state = _state(app)
        flow = _normalized(self)
        if "task_id" in options:
            _set_handle_id(flow, options.pop("task_id"))
        _assign_ids(flow)
        if state.eager:  # run inline by the eager runner; nothing recorded
            flow._send(tuple(args), kwargs, app, options)
            return _result(flow, state)
        from . import workflow_graph

        workflow_id = _handle_id(flow)
        _tag(flow, {HEADER_WORKFLOW: workflow_id})
        workflow_graph.record(state, workflow_id, flow)
        flow._send(tuple(args), kwargs, app, options)
        return _result(flow, state)

    def _send(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        app: Flask | None,
        options: dict[str, Any],
    ) -> object:
        """Send it without recording anything (the worker continues workflows so)."""
        raise NotImplementedError

    def freeze(self, state: AppState) -> Any:
        """Fix the task ids now and return the result handle it will have."""
        _assign_ids(self)
        return _result(self, state)

    # ``|`` composes workflows (Celery's canvas API), it is not dict's merge
    def __or__(self, other: Any) -> Canvas:  # type: ignore[override]
        if isinstance(self, group) and isinstance(other, Signature):
            return chord(self, other)
        return chain(self, other)


class Signature(Canvas):
    """One task call: ``add.s(2, 3)``, ``add.si(2, 3)`` or ``signature("tasks.add",
    (2, 3))``. ``.set(queue=..., countdown=..., priority=...)`` changes its options.

    .. versionadded:: 0.2
    """

    kind = "signature"

    def __init__(
        self,
        task: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        immutable: bool = False,
        *,
        task_obj: Task | None = None,
    ) -> None:
        super().__init__(
            kind=self.kind,
            task=task,
            args=list(args),
            kwargs=dict(kwargs or {}),
            options={},
            immutable=bool(immutable),
        )
        self._task = task_obj
        self.set(**(options or {}))

    def __repr__(self) -> str:
        call = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}{'si' if self.immutable else 's'}({', '.join(call)})"

    @property
    def name(self) -> str:
        """The task name."""
        value: str = self["task"]
        return value

    @property
    def args(self) -> list[Any]:
        value: list[Any] = self["args"]
        return value

    @property
    def kwargs(self) -> dict[str, Any]:
        value: dict[str, Any] = self["kwargs"]
        return value

    @property
    def options(self) -> dict[str, Any]:
        value: dict[str, Any] = self["options"]
        return value

    @property
    def immutable(self) -> bool:
        """True when results of earlier tasks are not prepended to its arguments."""
        value: bool = self["immutable"]
        return value

    @property
    def id(self) -> str | None:
        """The task id, once fixed (``task_id`` option or :meth:`freeze`)."""
        return self.options.get("task_id")

    def clone(self) -> Signature:
        twin = super().clone()
        assert isinstance(twin, Signature)
        twin._task = self._task
        return twin

    def set(self, **options: Any) -> Signature:
        """Change sending options in place (``queue``, ``countdown``, ``eta``, ``expires``,
        ``priority``, ``task_id``, ``headers``, ``link``, ``link_error``); returns it."""
        unknown = set(options) - SIGNATURE_OPTIONS
        if unknown:
            raise TypeError(f"unknown signature option(s): {', '.join(sorted(unknown))}")
        for key in ("link", "link_error"):
            if key in options:
                options[key] = [_plain(signature(s)) for s in _as_list(options[key])]
        self.options.update(options)
        return self

    def link(self, sig: Any) -> Any:
        """Send ``sig`` with this task's value when it succeeds; returns ``sig``."""
        self.options.setdefault("link", []).append(_plain(signature(sig)))
        return sig

    def link_error(self, sig: Any) -> Any:
        """Send ``sig`` with this task's id when it fails; returns ``sig``."""
        self.options.setdefault("link_error", []).append(_plain(signature(sig)))
        return sig

    def call_options(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """The arguments and ``send_task`` options of sending it with ``args`` prepended
        (ignored when immutable), ``kwargs`` and ``options`` over its own."""
        full_args = tuple(self.args) if self.immutable else (*args, *self.args)
        full_kwargs = {**self.kwargs, **(kwargs or {})}
        opts = {**self.options, **options}
        return full_args, full_kwargs, opts

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task; ``args`` are prepended to its own unless it is immutable."""
        return self._send(tuple(args), kwargs, app, options)

    def _send(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        app: Flask | None,
        options: dict[str, Any],
    ) -> AsyncResult:
        full_args, full_kwargs, opts = self.call_options(args, kwargs, **options)
        own = {HEADER_LINK: opts.pop("link", None), HEADER_LINK_ERROR: opts.pop("link_error", None)}
        if own[HEADER_LINK] or own[HEADER_LINK_ERROR]:
            # a signature's links are plain data already (set/link store them so)
            opts["headers"] = {
                **(opts.get("headers") or {}),
                **{
                    k: [s if type(s) is dict else _plain(signature(s)) for s in _as_list(v)]
                    for k, v in own.items()
                    if v
                },
            }
        result: AsyncResult = self._taskqueue(app).send_task(
            self.name, full_args, full_kwargs, app=app, _task=self._task, **opts
        )
        return result

    def _taskqueue(self, app: Flask | None) -> Any:
        if self._task is not None and self._task.taskqueue is not None:
            return self._task.taskqueue
        return _state(app).taskqueue

    def freeze(self, state: AppState) -> AsyncResult:
        self.options.setdefault("task_id", str(uuid.uuid4()))
        return AsyncResult(self.options["task_id"], state=state)

    def add_headers(self, headers: dict[str, Any]) -> Signature:
        """Merge ``headers`` into its ``headers`` option; returns it."""
        self.options["headers"] = {**(self.options.get("headers") or {}), **headers}
        return self


class chain(Canvas):  # noqa: N801 - named like a function, as users call it
    """Run tasks one after the other, each getting the previous value as its first
    argument: ``chain(a.s(1), b.s(), c.s())`` or ``a.s(1) | b.s() | c.s()``.

    A failure stops the chain; the chain's result (the last task's) then fails with the
    same exception. ``.parent`` of a result walks back to the first task's. A group
    followed by a task becomes a chord (the task gets the list of the group's values).

    .. versionadded:: 0.2
    """

    kind = "chain"

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict):
            tasks = tuple(tasks[0])
        flat: list[Canvas] = []
        for t in tasks:
            sig = signature(t)
            flat.extend(sig.tasks if isinstance(sig, chain) else [sig])
        super().__init__(kind=self.kind, tasks=flat)

    @property
    def tasks(self) -> list[Canvas]:
        tasks: list[Canvas] = self["tasks"]
        return tasks

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def _steps(self) -> list[Canvas]:
        """Its steps, a group followed by a signature made into a chord. Not copies:
        callers work on a copy of the chain (sending links the steps together)."""
        steps: list[Canvas] = []
        for t in self.tasks:
            if steps and isinstance(steps[-1], group) and isinstance(t, Signature):
                steps[-1] = chord(steps[-1], t)
            else:
                steps.append(t)
        return steps

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
        **options: Any,
    ) -> Any:
        """Send the first task; the rest follow from the worker. ``link`` is added to the
        last task, ``link_error`` to each (only the one that fails runs it). Returns the
        last task's result (a :class:`GroupResult` if the chain ends with a group)."""
        if not self.tasks:
            raise ValueError("an empty chain cannot be sent")
        return super().apply_async(args, kwargs, app, **options)

    def _send(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        app: Flask | None,
        options: dict[str, Any],
    ) -> None:
        steps = self._steps()
        if not steps:
            raise ValueError("an empty chain cannot be sent")
        options = dict(options)
        link_error = _as_list(options.pop("link_error", None))
        link = _as_list(options.pop("link", None))
        first = steps[0]
        if (
            len(steps) > CHAIN_INLINE
            and type(first) is Signature
            and all(type(step) is Signature for step in steps[1:])
        ):
            state = _state(app)
            if not state.eager:
                _link_steps(steps, link, link_error, by_reference=True)
                rest = [state.serializer.dumps(_plain(step)) for step in steps[1:]]
                chain_id = first.id or str(uuid.uuid4())
                state.store.workflows.save_chain(chain_id, rest, state.result_expires or CHAIN_TTL)
                first.options.setdefault("link", []).append(_rest_ref(chain_id, 0, len(rest)))
                first._send(args, kwargs, app, options)
                return
        _link_steps(steps, link, link_error)._send(args, kwargs, app, options)


def _rest_ref(chain_id: str, at: int, size: int) -> dict[str, Any]:
    return {"kind": CHAIN_REST, "chain": chain_id, "at": at, "size": size}


def _link_steps(
    steps: list[Canvas], link: list[Any], link_error: list[Any], by_reference: bool = False
) -> Canvas:
    """Link the first step to the rest (``link`` after the last, ``link_error`` on each);
    returns the first step, whose sending starts them all. ``by_reference``: only
    ``link`` and ``link_error`` (the caller links the steps through the store).

    The rest travels as one flat ``chain`` (linked the same way when it is sent), not as
    links nested in links: a message carries the steps after it as a list, so long chains
    need no deep recursion to encode or decode."""
    for step in steps:
        for errback in link_error:
            _on_error(step, errback)
    for callback in link:
        _on_success(steps[-1], callback)
    if len(steps) > 1 and not by_reference:
        _on_success(steps[0], steps[1] if len(steps) == 2 else chain(*steps[1:]))
    return steps[0]


def _on_success(step: Canvas, sig: Any) -> None:
    if isinstance(step, chord | Signature):
        step.link(sig)
    else:
        raise TypeError(f"nothing can follow a {step.kind} in a chain except one task")


def _on_error(step: Canvas, sig: Any) -> None:
    if isinstance(step, chord):
        step.link_error(sig)
    elif isinstance(step, group | chain):
        for member in step.tasks:
            _on_error(member, sig)
    else:
        assert isinstance(step, Signature)
        step.link_error(sig)


class group(Canvas):  # noqa: N801
    """Run tasks in parallel: ``group(sigs)``, ``group(gen)`` or ``group(a.s(), b.s())``;
    sending returns a :class:`GroupResult`. ``group(...) | callback`` is a chord.

    .. versionadded:: 0.2
    """

    kind = "group"

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict):
            tasks = tuple(tasks[0])
        super().__init__(kind=self.kind, tasks=[signature(t) for t in tasks], options={})

    @property
    def tasks(self) -> list[Canvas]:
        tasks: list[Canvas] = self["tasks"]
        return tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"group({', '.join(repr(t) for t in self.tasks)})"

    @property
    def id(self) -> str | None:
        """The group's id (its :class:`GroupResult`'s), once fixed."""
        task_id: str | None = self["options"].get("task_id")
        return task_id

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
        **options: Any,
    ) -> GroupResult:
        """Send every member (``args`` prepended to each); returns a :class:`GroupResult`
        with the members' results in order (``task_id=`` sets its id)."""
        result: GroupResult = super().apply_async(args, kwargs, app, **options)
        return result

    def _send(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        app: Flask | None,
        options: dict[str, Any],
    ) -> None:
        for t in self.tasks:
            t.clone()._send(args, kwargs, app, options)


class chord(Canvas):  # noqa: N801
    """``chord(header_group, callback)`` or ``group(...) | callback``: run the header's
    tasks in parallel, then the callback once with the list of their values.

    The members count in the store (``state.store.workflows``); the one that completes
    the set fires the chord once (with Redis, the callback is sent in the same script that
    marks the chord fired), so the callback is sent exactly once, also when members retry,
    are redelivered after a crash or finish at the same instant. If a member fails, the
    chord's result fails with :class:`ChordError` naming it and its ``link_error``
    signatures run once.

    The callback is a task signature or a chain (whose first task gets the list); a
    header member is a task, a chain or a chord.

    .. versionadded:: 0.2
    """

    kind = "chord"

    def __init__(self, header: Any, body: Any = None) -> None:
        header = signature(header) if isinstance(header, dict) else group(header)
        if not isinstance(header, group):
            header = group(header)
        body = signature(body)
        if isinstance(body, chain) and body.tasks and isinstance(body.tasks[0], Signature):
            body = chain(*body.tasks) if len(body.tasks) > 1 else body.tasks[0]
        elif not isinstance(body, Signature):
            raise TypeError(
                "the callback of a chord must be a task signature or a chain starting with one"
            )
        super().__init__(kind=self.kind, header=header, body=body)

    @property
    def header(self) -> group:
        header: group = self["header"]
        return header

    @property
    def body(self) -> Any:
        """The callback: a :class:`Signature` or a :class:`chain`."""
        return self["body"]

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def link(self, sig: Any) -> Any:
        """Send ``sig`` with the callback's value after the callback succeeds."""
        if isinstance(self.body, chain):
            _on_success(self.body.tasks[-1], sig)
            return sig
        return self.body.link(sig)

    def link_error(self, sig: Any) -> Any:
        """Send ``sig`` once (with the chord's result id) if the chord fails."""
        if isinstance(self.body, chain):
            for step in self.body.tasks:
                _on_error(step, sig)
            return sig
        return self.body.link_error(sig)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
        **options: Any,
    ) -> Any:
        """Send the header's members; returns the callback's result (the last task's for
        a chain), whose ``.parent`` chain leads to the header's :class:`GroupResult`."""
        return super().apply_async(args, kwargs, app, **options)

    def _send(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        app: Flask | None,
        options: dict[str, Any],
    ) -> None:
        flow = self.clone()
        assert isinstance(flow, chord)
        options = dict(options)
        for errback in _as_list(options.pop("link_error", None)):
            flow.link_error(errback)
        for callback in _as_list(options.pop("link", None)):
            flow.link(callback)
        head = flow._callback()
        members = flow.header.tasks
        if not members:
            head._send(([],), None, app, {})
            return
        chord_id = flow.header.id or str(uuid.uuid4())
        callback = head.to_dict()
        for index, member in enumerate(members):
            meta = {"id": chord_id, "size": len(members), "index": index, "callback": callback}
            tail = _with_tail_headers(member.clone(), {HEADER_CHORD: meta})
            tail._send(args, kwargs, app, options)

    def _callback(self) -> Signature:
        """The task the chord sends (a chain's first, linked to the rest)."""
        body = self.body
        if isinstance(body, chain):
            head = _link_steps(body._steps(), [], [])
            assert isinstance(head, Signature)
            return head
        assert isinstance(body, Signature)
        return body


def _with_tail_headers(sig: Canvas, headers: dict[str, Any]) -> Canvas:
    """``sig`` with ``headers`` on the task that finishes it (the last of a chain)."""
    if isinstance(sig, Signature):
        return sig.add_headers(headers)
    if isinstance(sig, chain) and sig.tasks:
        sig.tasks[-1] = _with_tail_headers(sig.tasks[-1], headers)
        return sig
    if isinstance(sig, chord):
        sig["body"] = _with_tail_headers(sig.body, headers)
        return sig
    raise TypeError(f"a {sig.kind} cannot be a member of a chord's header")


# -- ids, result handles and the worker's sends ----------------------------------------------
def _normalized(flow: Canvas) -> Canvas:
    """A copy of ``flow`` as it runs: in chains a group followed by a task is a chord."""
    flow = flow.clone()
    if isinstance(flow, chain):
        return chain(*[_normalized(step) for step in flow._steps()])
    if isinstance(flow, group):
        flow["tasks"] = [_normalized(t) for t in flow.tasks]
    elif isinstance(flow, chord):
        flow["header"] = _normalized(flow.header)
        flow["body"] = _normalized(flow.body)
    return flow


def _assign_ids(flow: Canvas) -> None:
    """Fix the id of every task and group in ``flow`` (ids already set are kept)."""
    if isinstance(flow, Signature):
        flow.options.setdefault("task_id", str(uuid.uuid4()))
    elif isinstance(flow, group):
        flow["options"].setdefault("task_id", str(uuid.uuid4()))
        for t in flow.tasks:
            _assign_ids(t)
    elif isinstance(flow, chain):
        for t in flow.tasks:
            _assign_ids(t)
    elif isinstance(flow, chord):
        _assign_ids(flow.header)
        _assign_ids(flow.body)


def _set_handle_id(flow: Canvas, task_id: str) -> None:
    """Make ``task_id`` the id of the result ``flow`` returns (``task_id=`` option)."""
    if isinstance(flow, Signature):
        flow.set(task_id=task_id)
    elif isinstance(flow, group):
        flow["options"]["task_id"] = task_id
    elif isinstance(flow, chain):
        _set_handle_id(flow.tasks[-1], task_id)
    elif isinstance(flow, chord):
        _set_handle_id(flow.body, task_id)


def _handle_id(flow: Canvas) -> str:
    """The id of the result sending ``flow`` returns (ids must be fixed)."""
    if isinstance(flow, Signature | group):
        return str(flow.id)
    if isinstance(flow, chain):
        return _handle_id(flow.tasks[-1])
    assert isinstance(flow, chord)
    return _handle_id(flow.body)


def _tag(flow: Canvas, headers: dict[str, Any]) -> None:
    """Add ``headers`` to every task of ``flow``."""
    for sig in iter_signatures(flow):
        sig.add_headers(headers)


def iter_signatures(flow: Any) -> Iterator[Signature]:
    """Every task signature in ``flow``, in order (links of a signature not included)."""
    if isinstance(flow, Signature):
        yield flow
    elif isinstance(flow, group | chain):
        for t in flow.tasks:
            yield from iter_signatures(t)
    elif isinstance(flow, chord):
        yield from iter_signatures(flow.header)
        yield from iter_signatures(flow.body)


def _result(flow: Canvas, state: AppState) -> Any:
    """The result handle of ``flow`` (ids fixed), ``.parent`` set along chains: a
    chain's step points to the step before, a chord's callback to its header's
    :class:`GroupResult`."""
    if isinstance(flow, Signature):
        return AsyncResult(str(flow.id), state=state)
    if isinstance(flow, group):
        return GroupResult(str(flow.id), [_result(t, state) for t in flow.tasks], state=state)
    if isinstance(flow, chord):
        header = _result(flow.header, state)
        body = _result(flow.body, state)
        _set_first_parent(body, header)
        return body
    assert isinstance(flow, chain)
    previous = None
    for step in flow.tasks:
        result = _result(step, state)
        if previous is not None:
            _set_first_parent(result, previous)
        previous = result
    return previous


def _set_first_parent(result: Any, parent: Any) -> None:
    while result.parent is not None:
        result = result.parent
    result.parent = parent


def send_next(data: Any, args: tuple[Any, ...], app: Flask | None) -> None:
    """Send the canvas object ``data`` (a dict from a message header) with ``args``, as
    the worker does to continue a workflow: nothing is recorded again."""
    if type(data) is dict and data.get("kind") == CHAIN_REST:
        # one step read from the store; the link to the one after it is a new reference
        sig = link_targets(data, app, only_next=True)[0]
        at, size = int(data["at"]), int(data["size"])
        if at + 1 < size:
            sig.options.setdefault("link", []).append(_rest_ref(data["chain"], at + 1, size))
        sig._send(args, None, app, {})
        return
    tasks = _flat_chain_tasks(data)
    if tasks is None:
        signature(data)._send(args, None, app, {})  # a new object: sending may change it
        return
    # The rest of a chain sent by _link_steps: already normalised, its links and errbacks
    # attached. Only the first step is rebuilt; the others go on as the plain data they
    # are (a long chain costs no Python objects per remaining step).
    first = signature(tasks[0])
    if len(tasks) > 1:
        rest = tasks[1] if len(tasks) == 2 else {"kind": "chain", "tasks": tasks[1:]}
        first.options.setdefault("link", []).append(rest)
    first._send(args, None, app, {})


def link_targets(data: Any, app: Flask | None, only_next: bool = False) -> list[Any]:
    """The canvas objects the link ``data`` (from a message header) stands for: itself,
    or for a ``chain_rest`` reference the steps it names from the store (the next one
    only with ``only_next``). Raises :class:`ChainExpired` when they are gone."""
    if not (type(data) is dict and data.get("kind") == CHAIN_REST):
        return [signature(data)]
    state = _state(app)
    at, chain_id = int(data["at"]), data["chain"]
    if only_next:
        found = _next_steps(state, chain_id, at, int(data["size"]))
    else:
        found = state.store.workflows.chain_steps(chain_id, at, -1)
    if not found:
        raise ChainExpired(
            f"the steps of chain {data['chain']} from {at} are no longer stored (they "
            "expire with the results, TASKQ_RESULT_EXPIRES)"
        )
    return [signature(state.serializer.loads(raw)) for raw in found]


#: Steps of stored chains read ahead by this process: (chain id, index) -> encoded step.
#: Steps never change once stored, so a worker reads a chain's steps
#: :data:`CHAIN_READ_AHEAD` at a time rather than one round trip per link.
_read_ahead: dict[tuple[str, int], bytes] = {}
CHAIN_READ_AHEAD = 16
_READ_AHEAD_MAX = 4096
_read_ahead_lock = threading.Lock()


def _next_steps(state: AppState, chain_id: str, at: int, size: int) -> list[bytes]:
    """``[step at]`` of a stored chain (read ahead with the steps after it), or []."""
    with _read_ahead_lock:
        step = _read_ahead.pop((chain_id, at), None)
    if step is not None:
        return [step]
    stop = min(at + CHAIN_READ_AHEAD, size) - 1
    found = state.store.workflows.chain_steps(chain_id, at, stop)
    if not found:
        return []
    with _read_ahead_lock:
        while len(_read_ahead) > _READ_AHEAD_MAX:  # the oldest first (insertion order)
            del _read_ahead[next(iter(_read_ahead))]
        for i, raw in enumerate(found[1:], at + 1):
            _read_ahead[(chain_id, i)] = raw
    return found[:1]


def _flat_chain_tasks(data: Any) -> list[Any] | None:
    """The steps of ``data`` if it is a plain chain whose first step is a task and that
    needs no rewriting (no nested chain, no group followed by a task), else None."""
    if isinstance(data, Canvas) or not isinstance(data, dict) or data.get("kind") != "chain":
        return None
    tasks = data.get("tasks") or []
    kinds = [t.get("kind", "signature") if isinstance(t, dict) else None for t in tasks]
    if not kinds or kinds[0] != "signature" or "chain" in kinds or None in kinds:
        return None
    if any(a == "group" and b == "signature" for a, b in itertools.pairwise(kinds)):
        return None
    return tasks


def signature(
    varies: Any,
    args: Iterable[Any] = (),
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    immutable: bool = False,
) -> Any:
    """A signature of the task named ``varies``, or the canvas object a dict made by
    :meth:`Canvas.to_dict` describes (canvas objects are returned as they are).

    .. versionadded:: 0.2
    """
    if isinstance(varies, Canvas):
        return varies
    if isinstance(varies, dict):
        kind = varies.get("kind", "signature")
        if kind == "signature":
            return Signature(
                varies["task"],
                varies.get("args") or (),
                varies.get("kwargs"),
                varies.get("options"),
                bool(varies.get("immutable")),
            )
        if kind == "chain":
            return chain(*varies["tasks"])
        if kind == "group":
            sig = group(*varies["tasks"])
            sig["options"].update(varies.get("options") or {})
            return sig
        if kind == "chord":
            return chord(varies["header"], varies["body"])
        raise ValueError(f"not a canvas object: kind {kind!r}")
    if hasattr(varies, "name") and hasattr(varies, "apply_async"):  # a Task
        return Signature(varies.name, args, kwargs, options, immutable, task_obj=varies)
    return Signature(str(varies), args, kwargs, options, immutable)


class GroupResult:
    """The results of a group's members, in order.

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        id: str,
        results: list[Any],
        app: Flask | None = None,
        *,
        state: AppState | None = None,
    ) -> None:
        self.id = id
        self.results = list(results)
        self._state = state or _state(app)
        #: In a chain, the result of the step before the group (see ``AsyncResult``).
        self.parent: Any = None

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Wait for every member; their values in member order. ``timeout`` is for the
        whole group; with ``propagate`` the first failure (in member order) is raised."""
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                values.append(result.get(timeout=left, propagate=propagate))
            except TaskTimeoutError:
                raise TaskTimeoutError(f"group {self.id} not ready after {timeout} s") from None
        return values

    def ready(self) -> bool:
        """True once every member finished."""
        return all(r.ready() for r in self.results)

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(1 for r in self.results if r.successful())

    def successful(self) -> bool:
        """True if every member succeeded."""
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        """True if any member failed."""
        return any(r.failed() for r in self.results)

    def revoke(self, terminate: bool = False) -> None:
        """Revoke every member."""
        ids = [r.id for r in self.results]
        self._state.revocations.revoke(ids, terminate=terminate)

    def save(self) -> GroupResult:
        """Store the member ids (for ``TASKQ_RESULT_EXPIRES``) so that
        :meth:`restore` can rebuild it from the id."""
        backend = self._backend(self._state)
        data = self._state.serializer.dumps([r.id for r in self.results])
        backend.save_group(self.id, data, self._state.result_expires)
        return self

    @classmethod
    def restore(cls, id: str, app: Flask | None = None) -> GroupResult | None:
        """The saved group ``id``, or None if it was not saved (or expired)."""
        state = _state(app)
        data = cls._backend(state).restore_group(id)
        if data is None:
            return None
        ids = state.serializer.loads(data)
        return cls(id, [AsyncResult(i, state=state) for i in ids], state=state)

    @staticmethod
    def _backend(state: AppState) -> ResultBackend:
        if state.backend is None:
            raise RuntimeError("GroupResult.save()/restore() need a result backend")
        return state.backend

    @property
    def state(self) -> str:
        """SUCCESS when every member succeeded, FAILURE if any failed, else PENDING."""
        if self.failed():
            return states.FAILURE
        return states.SUCCESS if self.successful() else states.PENDING
