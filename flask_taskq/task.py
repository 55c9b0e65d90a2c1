"""Task objects: what ``@tq.task`` returns."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import json
import random
import time
import types
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import current_app, has_app_context

from .concurrency import check_options as check_concurrency
from .config import ACKS_EARLY_UNSUPPORTED, DEFAULTS, task_defaults
from .exceptions import MaxRetriesExceededError, Retry
from .ratelimit import parse_rate

if TYPE_CHECKING:
    from .canvas import Signature
    from .extension import TaskQueue
    from .result import AsyncResult
    from .result import AsyncResult as Result
    from .state import AppState

#: Task options accepted by ``@tq.task(...)`` besides ``name`` and ``bind``.
TASK_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "max_retries",
        "autoretry_for",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "default_retry_delay",
        "rate_limit",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "expires",
        "acks_late",
        "unique",
        "unique_for",
        "concurrency_key",
        "concurrency_limit",
        "track_started",
    }
)

#: Message header carrying a unique task's key, so the worker can free it.
UNIQUE_HEADER = "taskq_unique"
#: How long a unique task's key is held at most (seconds), unless ``unique_for`` says.
DEFAULT_UNIQUE_FOR = 3600


def unique_key(task_name: str, unique: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The deduplication key of a call: ``unique(*args, **kwargs)`` when ``unique`` is
    callable, else a digest of the task name and the arguments."""
    if callable(unique):
        return f"{task_name}:{unique(*args, **kwargs)}"
    canonical = json.dumps([task_name, list(args), kwargs], sort_keys=True, default=repr)
    return f"{task_name}:{hashlib.sha256(canonical.encode()).hexdigest()}"


@dataclass(slots=True)
class Request:
    """What a bound task knows about the message it is running (``self.request``)."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    queue: str = "default"
    priority: int = 5
    eta: float | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    delivery_count: int = 1
    is_eager: bool = False
    #: Set when ``retry()`` found no retries left (the failure is then final).
    retries_exhausted: bool = False


#: Task options' defaults where no app says otherwise (``TASKQ_TASK_*`` in ``DEFAULTS``);
#: the retry options' defaults are Celery's.
OPTION_DEFAULTS: dict[str, Any] = task_defaults(DEFAULTS)


def retry_countdown(options: dict[str, Any], retries: int) -> float:
    """Seconds before retry number ``retries + 1``: ``default_retry_delay``, or with
    ``retry_backoff`` ``factor * 2 ** retries`` capped at ``retry_backoff_max`` and, with
    ``retry_jitter``, a random value between 0 and that."""
    backoff = options.get("retry_backoff", OPTION_DEFAULTS["retry_backoff"])
    if not backoff:
        return float(options.get("default_retry_delay", OPTION_DEFAULTS["default_retry_delay"]))
    factor = 1 if backoff is True else backoff
    cap = options.get("retry_backoff_max", OPTION_DEFAULTS["retry_backoff_max"])
    countdown = min(cap, factor * 2**retries)
    if options.get("retry_jitter", OPTION_DEFAULTS["retry_jitter"]):
        countdown = random.uniform(0, countdown)
    return float(countdown)


def retry_at(
    options: dict[str, Any],
    retries: int,
    max_retries: int | types.EllipsisType | None = ...,
    countdown: float | None = None,
) -> float | None:
    """The retry decision, made here only: when attempt ``retries + 1`` runs (unix time),
    or None when the retries allowed are used up. ``max_retries`` defaults to the
    ``options``' (None: no limit); ``countdown`` defaults to :func:`retry_countdown`.

    :meth:`Task.retry`, the worker's automatic retries (``autoretry_for``) and a
    ``time_limit`` kill all ask it."""
    limit = (
        options.get("max_retries") if isinstance(max_retries, types.EllipsisType) else max_retries
    )
    if limit is not None and retries >= limit:
        return None
    return time.time() + (countdown if countdown is not None else retry_countdown(options, retries))


def autoretry_at(
    task: Task, options: dict[str, Any], retries: int, error: BaseException
) -> float | None:
    """When a task that raised ``error`` runs again: ``Retry`` (from :meth:`Task.retry`)
    says when itself; an exception of ``autoretry_for`` asks :func:`retry_at`. None when
    the failure is final."""
    if isinstance(error, Retry):
        if error.when is not None:
            return error.when
        return time.time() + retry_countdown(options, retries)
    if not task.autoretry_for or not isinstance(error, task.autoretry_for):
        return None
    return retry_at(options, retries)


#: The request of the task running in this context (None outside a task); the worker
#: sets it around each run.
current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "taskq_request", default=None
)


class Task:
    """A registered task. Call it to run inline; ``.delay()`` to run it on a worker.

    Its options in effect (:attr:`options`) are its own, from the decorator, over the
    ``TASKQ_TASK_*`` defaults of the app it is sent or run for, so one ``TaskQueue``
    serves apps with different defaults.
    """

    def __init__(
        self,
        taskqueue: TaskQueue | None,
        fn: Callable[..., Any],
        name: str,
        bind: bool = False,
        **options: Any,
    ) -> None:
        unknown = set(options) - TASK_OPTIONS
        if unknown:
            raise TypeError(f"unknown task option(s) for {name!r}: {', '.join(sorted(unknown))}")
        if options.get("rate_limit") is not None:
            parse_rate(options["rate_limit"])  # a bad limit fails here, not in the worker
        check_concurrency(name, fn, bind, options)
        if options.get("acks_late") is False:
            warnings.warn(f"task {name!r}: {ACKS_EARLY_UNSUPPORTED}", UserWarning, stacklevel=3)
        if inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"task {name!r} is an async generator: a task returns one value; "
                "declare it with async def and return, or collect the items"
            )
        self.taskqueue = taskqueue
        #: The decorated function, as written.
        self.fn = fn
        #: What the task runs: the function, bound to the task when ``bind=True`` (as in
        #: Celery, ``task.run(*args)`` then passes the task as ``self``). The worker calls
        #: it, so ``mock.patch("module.task.run")`` replaces the task's body everywhere.
        self.run: Callable[..., Any] = types.MethodType(fn, self) if bind else fn
        self.name = name
        self.bind = bind
        #: True for an ``async def`` task: workers run it on their event loop (docs/async).
        self.is_async = inspect.iscoroutinefunction(fn)
        #: The options given to the decorator.
        self.own_options = options
        self.autoretry_for: tuple[type[BaseException], ...] = tuple(
            options.get("autoretry_for", ())
        )
        self._no_app_options = {**OPTION_DEFAULTS, **options}
        self._last: tuple[weakref.ref[AppState], dict[str, Any]] | None = None
        #: What :meth:`TaskQueue.send_plain` settled for the last app state it sent for.
        self.send_plan: tuple[weakref.ref[AppState], Any] | None = None
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    @property
    def options(self) -> dict[str, Any]:
        """The options in effect for the app in use (see :meth:`options_for`): the current
        app when it uses this task's ``TaskQueue``, else the one app bound to it."""
        return self.options_for(self._app_state())

    @property
    def ignore_result(self) -> bool:
        """True when no result is stored (``ignore_result`` in :attr:`options`)."""
        return bool(self.options["ignore_result"])

    @property
    def max_retries(self) -> int | None:
        """How many retries are allowed (``None``: no limit), from :attr:`options`."""
        limit: int | None = self.options["max_retries"]
        return limit

    def options_for(self, state: AppState | None) -> dict[str, Any]:
        """The task's own options over the ``TASKQ_TASK_*`` defaults of the app whose
        state is ``state`` (with ``None``, over the built-in defaults). Do not modify it."""
        if state is None:
            return self._no_app_options
        last = self._last
        if last is not None and last[0]() is state:
            return last[1]
        options = {**state.task_defaults, **self.own_options}
        self._last = (weakref.ref(state), options)
        return options

    def _taskqueue(self) -> TaskQueue:
        if self.taskqueue is None:
            raise RuntimeError(f"task {self.name!r} belongs to no TaskQueue")
        return self.taskqueue

    def _app_state(self) -> AppState | None:
        if has_app_context():
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            state: AppState | None = app.extensions.get("taskq")
            if state is not None and (self.taskqueue is None or state.taskqueue is self.taskqueue):
                return state
        if self.taskqueue is not None:
            apps = self.taskqueue.bound_apps()
            if len(apps) == 1:
                found: AppState | None = apps[0].extensions.get("taskq")
                return found
        return None
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task inline, as Celery does. Without an app context, and when exactly
        one app is bound (to this task's ``TaskQueue``, or to any for a shared task), it
        runs inside a new app context of that app."""
        if not has_app_context():
            app = self._only_app()
            if app is not None:
                if self.is_async:  # the coroutine runs later: the context goes with it
                    return _in_app_context(app, self.run(*args, **kwargs))
                with app.app_context():
                    return self.run(*args, **kwargs)
        return self.run(*args, **kwargs)

    def _only_app(self) -> Any:
        """The one Flask app bound to this task's TaskQueue (any TaskQueue when it has
        none), or None when there are none or several."""
        from .state import taskqueues

        candidates = [self.taskqueue] if self.taskqueue is not None else list(taskqueues)
        apps = [app for tq in candidates for app in tq.bound_apps()]
        return apps[0] if len(apps) == 1 else None

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802
        """The result handle of ``task_id`` (Celery's ``task.AsyncResult(id)``), for the
        current app, else the single app bound to this task's ``TaskQueue``."""
        from .result import AsyncResult
        from .state import resolve_state

        return AsyncResult(task_id, state=resolve_state(None, self.taskqueue))

    @property
    def request(self) -> Request:
        """The request of the message being run in this thread (bound tasks)."""
        request = current_request.get()
        if request is None:
            return Request(id="", task=self.name)
        return request

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        max_retries: int | types.EllipsisType | None = ...,
    ) -> Retry:
        """Ask for this task to run again later (bound tasks): raises :class:`Retry`.

        ``raise self.retry(exc=exc)`` reads well and works. Without ``countdown`` or
        ``eta`` the delay is ``default_retry_delay``. When the retries allowed
        (``max_retries``; None means no limit) are used up, raises ``exc`` instead (or
        :class:`MaxRetriesExceededError` without one) and the failure is final.
        """
        request = current_request.get()
        if request is None:
            raise RuntimeError("retry() is for a task running in a worker (bind=True)")
        options = self.options
        due = retry_at(options, request.retries, max_retries, countdown)
        if due is None:
            request.retries_exhausted = True
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"task {self.name!r} {request.id} gave up after {request.retries} retries"
            )
        when = due if eta is None else eta if isinstance(eta, int | float) else _unix(eta)
        raise Retry(f"retry in {when - time.time():.1f}s", exc=exc, when=when)

    def update_state(self, state: str, meta: Any = None, *, task_id: str | None = None) -> None:
        """Report the running task's state (bound tasks), e.g. progress:
        ``self.update_state(state="PROGRESS", meta={"current": 3, "total": 10})``.

        Until the task finishes, ``AsyncResult(id).state`` is ``state`` and ``.result`` /
        ``.info`` is ``meta`` (which the serializer must be able to encode). ``task_id``
        reports for another task. Does nothing when the function is called directly (there
        is no task id), when results are disabled, and for a task that keeps no result
        (``ignore_result``): its final state is not stored, so the reported one would stay.

        .. versionadded:: 0.2
        """
        from .state import resolve_state

        request = current_request.get()
        if task_id is None:
            if request is None or not request.id:
                return
            task_id = request.id
        app_state = resolve_state(None, self.taskqueue)
        eager = request is not None and request.is_eager
        if app_state.backend is None or (self.ignore_result and not eager):
            return
        serializer = app_state.serializer
        try:
            data = serializer.dumps({"status": state, "task": self.name, "result": meta})
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"meta of task {self.name!r} cannot be encoded by the "
                f"{serializer.name} serializer: {exc}"
            ) from exc
        app_state.backend.store_many([(task_id, data, False)], app_state.result_expires)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this call (:doc:`workflows`); in a chain the previous task's
        value is prepended to ``args``.

        .. versionadded:: 0.2
        """
        from .canvas import Signature

        return Signature(self.name, args, kwargs, task_obj=self)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it gets no other arguments than these.

        .. versionadded:: 0.2
        """
        from .canvas import Signature

        return Signature(self.name, args, kwargs, immutable=True, task_obj=self)

    def delay(self, *args: Any, **kwargs: Any) -> Result:
        """Send the task to a worker with these arguments."""
        if self.taskqueue is not None:
            result = self.taskqueue.send_plain(self, args, kwargs)
            if result is not None:
                return result
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        **options: Any,
    ) -> Result:
        """Send the task with explicit options; see :meth:`TaskQueue.send_task`."""
        return self._taskqueue().send_task(
            self.name,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            priority=priority,
            task_id=task_id,
            headers=headers,
            _task=self,
            **options,
        )

    def delay_many(self, calls: Iterable[Sequence[Any]], **options: Any) -> list[Result]:
        """Send one task per item of ``calls`` (each item: the positional arguments of one
        call) in few round trips; return the results in order::

            results = resize.delay_many((path, 128) for path in paths)

        ``options`` are sending options shared by all (see :meth:`TaskQueue.send_many`).

        .. versionadded:: 0.2
        """
        return self._taskqueue().send_many(
            self.name, ((args, None) for args in calls), _task=self, **options
        )

    def apply_many(
        self, calls: Iterable[tuple[Sequence[Any] | None, dict[str, Any] | None]], **options: Any
    ) -> list[Result]:
        """Like :meth:`delay_many` with ``(args, kwargs)`` pairs.

        .. versionadded:: 0.2
        """
        return self._taskqueue().send_many(self.name, calls, _task=self, **options)


async def _in_app_context(app: Any, coro: Any) -> Any:
    with app.app_context():
        return await coro


def set_request(request: Request | None) -> contextvars.Token[Request | None]:
    """Make ``request`` the current one (worker side)."""
    return current_request.set(request)


def reset_request(token: contextvars.Token[Request | None]) -> None:
    """Restore the request that was current before :func:`set_request`."""
    current_request.reset(token)


def _unix(value: datetime) -> float:
    from datetime import timezone

    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
