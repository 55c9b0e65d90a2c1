"""Workflows (canvas): signatures, ``chain``, ``group``, ``chord`` and ``GroupResult``.

A signature is a task call that has not been sent: a task name, arguments and sending
options. Every canvas object is a plain ``dict`` underneath (key ``kind`` says which), so
it travels inside messages as it is and :func:`signature` rebuilds it on the other side.

What happens next travels in the message headers and is acted on by the worker after the
task's outcome is final (``flask_taskq/worker/workflow.py``):

- ``taskq_link``: canvas dicts sent when the task succeeds, its value prepended to their
  arguments (unless immutable);
- ``taskq_link_error``: canvas dicts sent when it fails, with the failed task's id;
- ``taskq_chord``: ``{"id", "size", "index", "callback"}`` for a member of a chord header.
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import states
from .exceptions import TimeoutError as TaskTimeoutError
from .result import AsyncResult

if TYPE_CHECKING:
    from flask import Flask

    from .extension import AppState
    from .task import Task

HEADER_LINK = "taskq_link"
HEADER_LINK_ERROR = "taskq_link_error"
HEADER_CHORD = "taskq_chord"
#: The headers that make the worker call the workflow hook.
WORKFLOW_HEADERS = frozenset({HEADER_LINK, HEADER_LINK_ERROR, HEADER_CHORD})

#: Sending options a signature may carry (see :meth:`TaskQueue.send_task`).
SIGNATURE_OPTIONS = frozenset({"queue", "countdown", "eta", "expires", "priority",
                               "task_id", "headers", "link", "link_error"})


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
    from .extension import resolve_state

    return resolve_state(app)


class Canvas(dict):
    """What every canvas object shares: ``|``, ``delay``, ``to_dict`` and cloning."""

    kind = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data the serializer can encode; :func:`signature` rebuilds it."""
        return _plain(self)

    def clone(self) -> Canvas:
        """An independent copy (options and nested signatures included)."""
        return signature(copy.deepcopy(self.to_dict()))

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send it with extra arguments (see :meth:`apply_async`)."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    app: Flask | None = None, **options: Any) -> Any:
        raise NotImplementedError

    def freeze(self, state: AppState) -> Any:
        """Fix the task ids now and return the result handle it will have."""
        raise NotImplementedError

    def __or__(self, other: Any) -> Canvas:
        if isinstance(self, group) and isinstance(other, Signature):
            return chord(self, other)
        return chain(self, other)


class Signature(Canvas):
    """One task call: ``add.s(2, 3)``, ``add.si(2, 3)`` or ``signature("tasks.add",
    (2, 3))``. ``.set(queue=..., countdown=..., priority=...)`` changes its options.

    .. versionadded:: 0.2
    """

    kind = "signature"

    def __init__(self, task: str, args: Iterable[Any] = (),
                 kwargs: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None, immutable: bool = False,
                 *, task_obj: Task | None = None) -> None:
        super().__init__(kind=self.kind, task=task, args=list(args),
                         kwargs=dict(kwargs or {}), options={}, immutable=bool(immutable))
        self._task = task_obj
        self.set(**(options or {}))

    def __repr__(self) -> str:
        call = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}{'si' if self.immutable else 's'}({', '.join(call)})"

    @property
    def name(self) -> str:
        """The task name."""
        return self["task"]

    @property
    def args(self) -> list[Any]:
        return self["args"]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]

    @property
    def immutable(self) -> bool:
        """True when results of earlier tasks are not prepended to its arguments."""
        return self["immutable"]

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

    def call_options(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                     **options: Any) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """The arguments and ``send_task`` options of sending it with ``args`` prepended
        (ignored when immutable), ``kwargs`` and ``options`` over its own."""
        full_args = tuple(self.args) if self.immutable else (*args, *self.args)
        full_kwargs = {**self.kwargs, **(kwargs or {})}
        opts = {**self.options, **options}
        return full_args, full_kwargs, opts

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    app: Flask | None = None, **options: Any) -> AsyncResult:
        """Send the task; ``args`` are prepended to its own unless it is immutable."""
        full_args, full_kwargs, opts = self.call_options(args, kwargs, **options)
        if self._task is not None and self._task.taskqueue is not None:
            taskqueue = self._task.taskqueue
        else:
            taskqueue = _state(app).taskqueue
        return taskqueue.send_task(self.name, full_args, full_kwargs, app=app,
                                   _task=self._task, **opts)

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
    same exception. ``.parent`` of a result walks back to the first task's.

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
        return self["tasks"]

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def _steps(self) -> list[Canvas]:
        """Cloned steps, a group followed by a signature made into a chord."""
        steps: list[Canvas] = []
        for t in self.tasks:
            t = t.clone()
            if steps and isinstance(steps[-1], group) and isinstance(t, Signature):
                steps[-1] = chord(steps[-1], t)
            else:
                steps.append(t)
        return steps

    def freeze(self, state: AppState) -> Any:
        return self.tasks[-1].freeze(state) if self.tasks else None

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    app: Flask | None = None, **options: Any) -> Any:
        """Send the first task; the rest follow from the worker. ``link`` is added to the
        last task, ``link_error`` to each (only the one that fails runs it)."""
        steps = self._steps()
        if not steps:
            raise ValueError("an empty chain cannot be sent")
        state = _state(app)
        link_error = _as_list(options.pop("link_error", None))
        link = _as_list(options.pop("link", None))
        results = [step.freeze(state) for step in steps]
        following: Canvas | None = None
        for step in reversed(steps):
            for errback in link_error:
                _on_error(step, errback)
            for callback in link if following is None else [following]:
                _on_success(step, callback)
            following = step
        steps[0].apply_async(args, kwargs, app=app, **options)
        for parent, result in itertools.pairwise(results):
            result.parent = parent
        return results[-1]


def _on_success(step: Canvas, sig: Any) -> None:
    if isinstance(step, chord):
        step.body.link(sig)
    elif isinstance(step, Signature):
        step.link(sig)
    else:
        raise TypeError(f"nothing can follow a {step.kind} in a chain except one task")


def _on_error(step: Canvas, sig: Any) -> None:
    if isinstance(step, chord):
        step.body.link_error(sig)
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
        return self["tasks"]

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"group({', '.join(repr(t) for t in self.tasks)})"

    def freeze(self, state: AppState) -> GroupResult:
        self["options"].setdefault("task_id", str(uuid.uuid4()))
        return GroupResult(self["options"]["task_id"],
                           [t.freeze(state) for t in self.tasks], state=state)

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    app: Flask | None = None, **options: Any) -> GroupResult:
        """Send every member (``args`` prepended to each); returns a :class:`GroupResult`
        with the members' results in order."""
        state = _state(app)
        args = tuple(args)
        group_id = options.pop("task_id", None) or self["options"].get("task_id") \
            or str(uuid.uuid4())
        results = [t.clone().apply_async(args, kwargs, app=app, **options)
                   for t in self.tasks]
        return GroupResult(group_id, results, state=state)


class chord(Canvas):  # noqa: N801
    """``chord(header_group, callback)`` or ``group(...) | callback``: run the header's
    tasks in parallel, then the callback once with the list of their values.

    The members count in Redis (``chord_member.lua``); the one that completes the set
    sends the callback in the same script that marks the chord fired
    (``chord_fire.lua``), so the callback is sent exactly once, also when members retry,
    are redelivered after a crash or finish at the same instant. If a member fails, the
    chord's result fails with :class:`ChordError` naming it and its ``link_error``
    signatures run once.

    .. versionadded:: 0.2
    """

    kind = "chord"

    def __init__(self, header: Any, body: Any = None) -> None:
        header = signature(header) if isinstance(header, dict) else group(header)
        if not isinstance(header, group):
            header = group(header)
        body = signature(body)
        if not isinstance(body, Signature):
            raise TypeError("the callback of a chord must be a single task signature")
        super().__init__(kind=self.kind, header=header, body=body)

    @property
    def header(self) -> group:
        return self["header"]

    @property
    def body(self) -> Signature:
        return self["body"]

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def link(self, sig: Any) -> Any:
        """Send ``sig`` with the callback's value after the callback succeeds."""
        return self.body.link(sig)

    def link_error(self, sig: Any) -> Any:
        """Send ``sig`` once (with the chord's result id) if the chord fails."""
        return self.body.link_error(sig)

    def freeze(self, state: AppState) -> AsyncResult:
        return self.body.freeze(state)

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    app: Flask | None = None, **options: Any) -> AsyncResult:
        """Send the header's members; returns the callback's result, whose ``.parent`` is
        the header's :class:`GroupResult`."""
        state = _state(app)
        body = self.body.clone()
        for errback in _as_list(options.pop("link_error", None)):
            body.link_error(errback)
        for callback in _as_list(options.pop("link", None)):
            body.link(callback)
        if "task_id" in options:
            body.set(task_id=options.pop("task_id"))
        result = body.freeze(state)
        members = self.header.tasks
        if not members:
            body.apply_async(([],), app=app)
            return result
        chord_id = str(uuid.uuid4())
        callback = body.to_dict()
        args = tuple(args)
        results = []
        for index, member in enumerate(members):
            meta = {"id": chord_id, "size": len(members), "index": index,
                    "callback": callback}
            tail = _with_tail_headers(member.clone(), {HEADER_CHORD: meta})
            results.append(tail.apply_async(args, kwargs, app=app, **options))
        result.parent = GroupResult(chord_id, results, state=state)
        return result


def _with_tail_headers(sig: Canvas, headers: dict[str, Any]) -> Canvas:
    """``sig`` with ``headers`` on the task that finishes it (the last of a chain)."""
    if isinstance(sig, Signature):
        return sig.add_headers(headers)
    if isinstance(sig, chain) and sig.tasks:
        sig.tasks[-1] = _with_tail_headers(sig.tasks[-1], headers)
        return sig
    raise TypeError(f"a {sig.kind} cannot be a member of a chord's header")


def signature(varies: Any, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              options: dict[str, Any] | None = None, immutable: bool = False) -> Any:
    """A signature of the task named ``varies``, or the canvas object a dict made by
    :meth:`Canvas.to_dict` describes (canvas objects are returned as they are).

    .. versionadded:: 0.2
    """
    if isinstance(varies, Canvas):
        return varies
    if isinstance(varies, dict):
        kind = varies.get("kind", "signature")
        if kind == "signature":
            return Signature(varies["task"], varies.get("args") or (),
                             varies.get("kwargs"), varies.get("options"),
                             bool(varies.get("immutable")))
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

    def __init__(self, id: str, results: list[Any], app: Flask | None = None, *,
                 state: AppState | None = None) -> None:
        self.id = id
        self.results = list(results)
        self._state = state or _state(app)

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
                raise TaskTimeoutError(f"group {self.id} not ready after {timeout} s")\
                    from None
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
        client, keys = self._client(self._state)
        data = self._state.serializer.dumps([r.id for r in self.results])
        ttl = self._state.result_expires
        client.set(keys.group_result(self.id), data, ex=ttl or None)
        return self

    @classmethod
    def restore(cls, id: str, app: Flask | None = None) -> GroupResult | None:
        """The saved group ``id``, or None if it was not saved (or expired)."""
        state = _state(app)
        client, keys = cls._client(state)
        data = client.get(keys.group_result(id))
        if data is None:
            return None
        ids = state.serializer.loads(data)
        return cls(id, [AsyncResult(i, state=state) for i in ids], state=state)

    @staticmethod
    def _client(state: AppState) -> tuple[Any, Any]:
        from .keys import Keys

        client = getattr(state.backend, "client", None)
        if client is None:
            raise RuntimeError("GroupResult.save()/restore() need the Redis result backend")
        return client, Keys(state.key_prefix)

    @property
    def state(self) -> str:
        """SUCCESS when every member succeeded, FAILURE if any failed, else PENDING."""
        if self.failed():
            return states.FAILURE
        return states.SUCCESS if self.successful() else states.PENDING
