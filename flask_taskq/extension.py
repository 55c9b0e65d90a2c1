"""The Flask extension: ``TaskQueue``, the composition root.

``init_app`` wires an app together: it creates the app's :class:`~flask_taskq.state.AppState`
(broker, store, result backend), adds the ``flask taskq`` commands and the dashboard, and
on ``memory://`` gives the state a way to start the in-process worker. Nothing else in the
package imports this module (``AppState`` and ``resolve_state`` live in
:mod:`flask_taskq.state`, re-exported here); see "Layers" in ``docs/design.rst``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from flask import Flask

from . import events, signals, tracing
from .broker.memory import ANY_QUEUE
from .celery_compat import apply_celery_settings
from .config import apply_defaults
from .exceptions import NotRegistered
from .keys import DEFAULT_PRIORITY
from .message import (
    Message,
    PlainEncoder,
    envelope,
    new_task_id,
    new_task_ids,
    plain_encoder,
)
from .result import AsyncResult
from .state import AppState, import_task_modules, register_taskqueue, resolve_state
from .task import DEFAULT_UNIQUE_FOR, UNIQUE_HEADER, Task, unique_key

if TYPE_CHECKING:
    from .beat import Entry
    from .periodic import PeriodicManager
    from .serializer import Serializer
    from .worker import Worker
    from .workflow_templates import WorkflowTemplate, WorkflowTemplates

__all__ = ["AppState", "TaskQueue", "import_task_modules", "resolve_state"]

#: How many messages :meth:`TaskQueue.send_many` sends per round trip.
BULK_CHUNK = 1000
#: The sending options :meth:`TaskQueue.send_many` passes on to each message.
SEND_OPTIONS = frozenset({"countdown", "eta", "expires", "queue", "priority", "headers"})


def _unix_time(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _start_memory_worker(state: AppState) -> Worker:
    """Run a worker for ``state``'s ``memory://`` broker in a daemon thread of this
    process (every queue, four threads) and return it."""
    from .worker import Worker

    worker = Worker(
        state.app,
        pool="threads",
        concurrency=4,
        queues=[ANY_QUEUE],
        install_signals=False,
        state=state,
    )
    threading.Thread(target=worker.run, name="taskq-memory-worker", daemon=True).start()
    return worker


def _destination(
    state: AppState,
    name: str,
    topts: dict[str, Any],
    queue: str | None = None,
    priority: int | None = None,
    call: tuple[Any, ...] = (),
) -> tuple[str, int]:
    """Queue and priority of a message of task ``name``: the call's, else ``TASKQ_ROUTES``,
    else the task's options, else the defaults. ``ValueError`` for a bad priority.
    ``call`` is ``(args, kwargs, options, task)`` for router functions."""
    route = state.router.route(name, *call)
    if priority is None:
        priority = route.get("priority", topts.get("priority", DEFAULT_PRIORITY))
    if not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ValueError(f"priority must be an integer from 0 to 9, not {priority!r}")
    return queue or route.get("queue") or topts.get("queue") or state.default_queue, priority


class PlainPlan(NamedTuple):
    """What :meth:`TaskQueue.send_plain` settles once per task and app state."""

    #: The app state's broker when it was settled (a new broker settles it again).
    broker: Any
    queue: str
    #: Seconds from the send to the message's expiry (the task's ``expires``), or None.
    expires: float | None
    #: The envelope's fast encoder (:func:`~flask_taskq.message.plain_encoder`), or None.
    encode: PlainEncoder | None
    #: Sends a body within a timeout; None when :meth:`TaskQueue.send_plain` does not apply.
    send: Callable[[bytes, float], None] | None
    priority: int


def _reject_options(options: dict[str, Any]) -> None:
    raise TypeError(f"unknown option(s) for apply_async/send_task: {', '.join(sorted(options))}")


class TaskQueue:
    """The flask-taskq extension.

    ``TaskQueue(app)`` or ``tq = TaskQueue()`` then ``tq.init_app(app)`` in a factory.
    The object holds only the task registry; per-app state lives in
    ``app.extensions["taskq"]`` (an :class:`AppState`).
    """

    def __init__(self, app: Flask | None = None) -> None:
        from .shared import register_shared_tasks

        self.tasks: dict[str, Task] = {}
        #: Periodic entries declared in code (``periodic_task``/``add_periodic_task``).
        self.declared_periodic: dict[str, Entry] = {}
        self._bound: weakref.WeakSet[Flask] = weakref.WeakSet()
        register_taskqueue(self)
        register_shared_tasks(self)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``TASKQ_*`` config, store the app state and add the ``flask taskq`` CLI.

        An app takes one ``init_app``: a second one (of this or another TaskQueue)
        raises :class:`RuntimeError` instead of replacing the app's state.
        """
        from .cli import taskq_cli

        if "taskq" in app.extensions:
            raise RuntimeError(
                f"the app {app.name!r} already has a TaskQueue (init_app was called on it "
                "before): call init_app once per app and use that TaskQueue"
            )
        apply_celery_settings(app.config)
        apply_defaults(app.config)
        app.extensions["taskq"] = AppState(self, app, start_memory_worker=_start_memory_worker)
        self._bound.add(app)
        if "taskq" not in app.cli.commands:
            app.cli.add_command(taskq_cli)
        if app.config["TASKQ_DASHBOARD"]:
            from .dashboard import init_dashboard

            init_dashboard(app)

    def bound_apps(self) -> list[Flask]:
        """The apps this TaskQueue was ``init_app``-ed on (and that are still alive)."""
        return list(self._bound)

    # -- declaring tasks -------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self, *, name: str | None = None, bind: bool = False, **options: Any
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        bind: bool = False,
        **options: Any,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a function as a task: ``@tq.task`` or ``@tq.task(queue="mail", ...)``.

        The default name is ``"<module>.<function name>"``.
        """

        def register(func: Callable[..., Any]) -> Task:
            task_name = name or f"{func.__module__}.{func.__name__}"
            task = Task(self, func, task_name, bind=bind, **options)
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    # -- sending ---------------------------------------------------------------------------
    @tracing.traced_send
    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        app: Flask | None = None,
        _task: Task | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name (it need not be importable here) and return its result.

        ``countdown`` (seconds) or ``eta`` (datetime or unix time) delay it; ``expires``
        (seconds from now, datetime or unix time) drops it if not started by then.
        The queue and priority come from the call, else ``TASKQ_ROUTES``, else the
        task's options, else the defaults. ``link`` / ``link_error`` (a signature or a
        list of them) are sent when the task succeeds / fails (:doc:`workflows`).
        """
        if options:
            _reject_options(options)
        if link is not None or link_error is not None:
            from .canvas import link_headers

            headers = {**(headers or {}), **link_headers(link, link_error)}
        state, message, task, topts = self.build_message(
            name,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            priority=priority,
            task_id=task_id,
            headers=headers,
            app=app,
            _task=_task,
        )
        unique = topts.get("unique")
        if unique and not state.eager:
            key = unique_key(name, unique, message.args, message.kwargs)
            message = message.replace(headers={**message.headers, UNIQUE_HEADER: key})
        body = message.to_bytes(state.serializer, state.max_message_bytes)
        if state.eager:
            return self._run_eager(state, message, body)
        if unique:
            ttl = int(topts.get("unique_for") or DEFAULT_UNIQUE_FOR)
            owner = state.enqueue(message, body, unique=(key, ttl))
            if owner != message.id:
                return AsyncResult(owner, state=state)
        else:
            state.enqueue(message, body)
        if state.config["TASKQ_EVENTS"]:
            events.sent(state, message.id, name, message.queue, message.eta)
        if signals.task_sent.receivers:
            signals.task_sent.send(task or name, task=task, task_id=message.id, message=message)
        return AsyncResult(message.id, state=state)

    def send_plain(
        self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncResult | None:
        """``task.delay(*args, **kwargs)`` the short way, for the common case: no sending
        options, not unique, not eager, not ``memory://``, nobody connected to
        ``task_sent``, no tracer provider configured (the traced ``send_task`` puts the
        trace context in the headers). It sends the same message :meth:`send_task`
        would, without building a :class:`Message`; it returns None when the case is not
        that common one (or the arguments cannot be encoded), and the caller then uses
        :meth:`send_task`."""
        if signals.task_sent.receivers or (tracing.ENABLED and tracing.configured()):
            return None
        state = resolve_state(None, self)
        if state.eager:  # checked per call: testing.eager() turns it on for a while
            return None
        cached = task.send_plan
        if cached is not None and cached[0]() is state and cached[1][0] is state.broker:
            plan = cached[1]
        else:
            plan = self._plain_plan(state, task)
            task.send_plan = (weakref.ref(state), plan)
        _, queue, expires_in, encode, send, priority = plan
        if send is None:
            return None
        now = time.time()
        task_id = new_task_id()
        expires = None if expires_in is None else now + expires_in
        try:
            if encode is not None:
                body = encode(task_id, args, kwargs, expires, now)
            else:
                body = state.serializer.dumps(
                    envelope(
                        task_id, task.name, args, kwargs, queue, priority, None, expires, 0, {}, now
                    )
                )
        except (TypeError, ValueError, OverflowError):
            return None  # send_task names the argument that cannot be encoded
        if len(body) > state.max_message_bytes:
            return None  # send_task raises MessageTooLarge
        state.retrying(send, body, task_ids=(task_id,))
        if state.config["TASKQ_EVENTS"]:
            events.sent(state, task_id, task.name, queue)
        return AsyncResult(task_id, state=state)

    @staticmethod
    def _plain_plan(state: AppState, task: Task) -> PlainPlan:
        """What a plain send of ``task`` for ``state`` needs, settled once: the broker it
        was settled for, the queue, the relative expiry, the envelope's encoder when the
        serializer has a fast one (:func:`~flask_taskq.message.plain_encoder`), the send
        function (the broker's :meth:`~flask_taskq.broker.redis.RedisBroker.sender` if it
        has one; None when :meth:`send_plain` does not apply) and the priority."""
        broker = state.broker
        topts = task.options_for(state)
        expires = topts.get("expires")
        if (
            state.eager
            or state.is_memory
            or topts.get("unique")
            or state.router.dynamic
            or (expires is not None and not (isinstance(expires, int | float) and expires < 10**9))
        ):
            return PlainPlan(broker, "", None, None, None, DEFAULT_PRIORITY)
        try:
            queue, priority = _destination(state, task.name, topts)
        except ValueError:
            return PlainPlan(broker, "", None, None, None, DEFAULT_PRIORITY)  # send_task raises
        sender = getattr(broker, "sender", None)
        send = sender(queue, priority) if sender is not None else None
        if send is None:

            def send(body: bytes, timeout: float) -> None:
                broker.enqueue(queue, priority, body, None, timeout=timeout)

        encode = plain_encoder(state.serializer, task.name, queue, priority)
        return PlainPlan(broker, queue, expires, encode, send, priority)

    @tracing.traced_send
    def send_many(
        self,
        name: str,
        calls: Iterable[tuple[Sequence[Any] | None, dict[str, Any] | None]],
        *,
        chunk_size: int = BULK_CHUNK,
        app: Flask | None = None,
        _task: Task | None = None,
        **options: Any,
    ) -> list[AsyncResult]:
        """Send one task ``name`` per ``(args, kwargs)`` pair of ``calls``, with the same
        sending ``options`` for all (those of :meth:`send_task` except ``task_id``), and
        return their results in order.

        Messages go to Redis ``chunk_size`` at a time, one round trip per chunk. If the
        broker stays unreachable, :class:`BrokerConnectionError` is raised and the chunks
        before the failing one have been sent. Unique tasks and eager mode send one by
        one, as :meth:`send_task` would.

        .. versionadded:: 0.2
        """
        if "task_id" in options:
            raise TypeError("send_many/apply_many give each task its own id; task_id cannot be set")
        state = resolve_state(app, self)
        task = _task or self.tasks.get(name)
        topts = task.options_for(state) if task is not None else state.task_defaults
        if state.eager or topts.get("unique"):
            return [
                self.send_task(name, args, kwargs, app=app, _task=_task, **options)
                for args, kwargs in calls
            ]
        link, link_error = options.pop("link", None), options.pop("link_error", None)
        if link is not None or link_error is not None:
            from .canvas import link_headers

            options["headers"] = {
                **(options.get("headers") or {}),
                **link_headers(link, link_error),
            }
        unknown = set(options) - SEND_OPTIONS
        if unknown:
            _reject_options({k: options[k] for k in unknown})
        results: list[AsyncResult] = []
        chunk: list[tuple[str, str, int, float | None, bytes]] = []
        messages: list[Message] = []  # for task_sent's receivers, when there are any
        serializer, limit = state.serializer, state.max_message_bytes

        def flush() -> None:
            state.enqueue_many(chunk)
            results.extend(AsyncResult(item[0], state=state) for item in chunk)
            if state.config["TASKQ_EVENTS"]:
                for task_id, queue, _, eta, _ in chunk:
                    events.sent(state, task_id, name, queue, eta)
            for message in messages:
                signals.task_sent.send(task or name, task=task, task_id=message.id, message=message)
            chunk.clear()
            messages.clear()

        # Sending options are the same for every call: unless a router function sees each
        # call, the first message settles queue, priority, eta, expires and headers for all.
        first: Message | None = None
        encode: PlainEncoder | None = None
        remaining = iter(calls)
        for args, kwargs in remaining:
            if first is None or state.router.dynamic:
                _, message, _, _ = self.build_message(
                    name, args, kwargs, app=app, _task=task, **options
                )
                if first is None and message.eta is None and not message.headers:
                    encode = plain_encoder(serializer, name, message.queue, message.priority)
                first = first or message
                body = message.to_bytes(serializer, limit)
                item = (message.id, message.queue, message.priority, message.eta, body)
            else:
                item = _like(first, args, kwargs, serializer, limit, encode)
            chunk.append(item)
            if signals.task_sent.receivers:
                messages.append(_message_of(first, item, args, kwargs))
            elif encode is not None and not state.router.dynamic and not state.is_memory:
                send = getattr(state.broker, "sender_many", None)
                send = send(first.queue, first.priority) if send is not None else None
                if send is not None:  # the rest the short way
                    self._send_like(
                        state, first, encode, send, remaining, chunk, chunk_size, results
                    )
                    return results
            if len(chunk) >= chunk_size:
                flush()
        if chunk:
            flush()
        return results

    @staticmethod
    def _send_like(
        state: AppState,
        first: Message,
        encode: PlainEncoder,
        send: Callable[[Sequence[bytes], float], None],
        calls: Iterable[tuple[Sequence[Any] | None, dict[str, Any] | None]],
        chunk: list[tuple[str, str, int, float | None, bytes]],
        chunk_size: int,
        results: list[AsyncResult],
    ) -> None:
        """The rest of :meth:`send_many` when its messages are like ``first`` but for
        their id, arguments and send time (no eta, no headers, one queue, nobody connected
        to ``task_sent``, a JSON envelope ``encode`` can write and a broker ``send``
        function for many bodies): only a task id and a body per call, one buffer per
        chunk. ``chunk`` holds the messages made so far, not sent yet."""
        ids = [item[0] for item in chunk]
        bodies = [item[4] for item in chunk]
        expires, limit, queue = first.expires, state.max_message_bytes, first.queue
        make_id, clock = _id_source(chunk_size).__next__, time.time

        def flush() -> None:
            state.retrying(send, bodies, task_ids=tuple(ids))
            results.extend([AsyncResult(task_id, state=state) for task_id in ids])
            if state.config["TASKQ_EVENTS"]:
                for task_id in ids:
                    events.sent(state, task_id, first.task, queue, None)
            ids.clear()
            bodies.clear()

        for args, kwargs in calls:
            task_id = make_id()
            try:
                body = encode(task_id, args, kwargs or {}, expires, clock())
            except (TypeError, ValueError, OverflowError):
                body = b""
            if not body or len(body) > limit:  # raises TypeError or MessageTooLarge
                task_id, _, _, _, body = _like(first, args, kwargs, state.serializer, limit, None)
            ids.append(task_id)
            bodies.append(body)
            if len(ids) >= chunk_size:
                flush()
        if ids:
            flush()

    def build_message(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        app: Flask | None = None,
        _task: Task | None = None,
    ) -> tuple[AppState, Message, Task | None, dict[str, Any]]:
        """The message :meth:`send_task` would send (routing and defaults applied),
        with the app state, the task if registered here and its options."""
        state = resolve_state(app, self)
        task = _task or self.tasks.get(name)
        topts = task.options_for(state) if task is not None else state.task_defaults
        call: tuple[Any, ...] = ()
        if state.router.dynamic:  # router functions see the call as made, as in Celery
            sending = {
                "countdown": countdown,
                "eta": eta,
                "expires": expires,
                "queue": queue,
                "priority": priority,
                "task_id": task_id,
                "headers": headers,
            }
            call = (
                tuple(args or ()),
                dict(kwargs or {}),
                {k: v for k, v in sending.items() if v is not None},
                task,
            )
        now = time.time()
        if countdown is not None:
            eta = now + float(countdown)
        if expires is None:
            expires = topts.get("expires")
        if isinstance(expires, int | float) and expires < 10**9:
            expires = now + expires
        queue, priority = _destination(state, name, topts, queue, priority, call)
        message = Message(
            id=task_id or new_task_id(),
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            queue=queue,
            priority=priority,
            eta=_unix_time(eta),
            expires=_unix_time(expires),
            headers=dict(headers or {}),
            sent=now,
        )
        if tracing.ENABLED:
            message = tracing.stamp(message)
        return state, message, task, topts

    def _run_eager(self, state: AppState, message: Message, body: bytes) -> AsyncResult:
        from .worker.eager import run_eager

        if message.task not in self.tasks:
            raise NotRegistered(f"task {message.task!r} is not registered")
        run_eager(state, message, body)  # the worker's pipeline, inline
        return AsyncResult(message.id, state=state)

    def AsyncResult(self, task_id: str, app: Flask | None = None) -> AsyncResult:  # noqa: N802
        """The result handle of ``task_id`` for ``app`` (default: as in :func:`resolve_state`)."""
        return AsyncResult(task_id, state=resolve_state(app, self))

    # -- workflow templates (flask_taskq/workflow_templates.py) -------------------------------
    @property
    def workflows(self) -> WorkflowTemplates:
        """The named workflow templates
        (:class:`~flask_taskq.workflow_templates.WorkflowTemplates`):
        ``tq.workflows.launch(name, args, kwargs)``; the dashboard's Launch page lists them.

        .. versionadded:: 0.2
        """
        found: WorkflowTemplates | None = self.__dict__.get("_workflow_templates")
        if found is None:
            from .workflow_templates import WorkflowTemplates

            found = self.__dict__["_workflow_templates"] = WorkflowTemplates()
        return found

    @overload
    def workflow(
        self, name: str, target: None = None, *, description: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    @overload
    def workflow(
        self, name: str, target: Any, *, description: str | None = None
    ) -> WorkflowTemplate: ...

    def workflow(
        self, name: str, target: Any = None, *, description: str | None = None
    ) -> WorkflowTemplate | Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare the workflow template ``name``: ``tq.workflow("nightly", chain(...))``
        (launch arguments go to its first task), or ``@tq.workflow("nightly")`` on a
        function of the launch parameters that returns the canvas (see
        :mod:`flask_taskq.workflow_templates`).

        .. versionadded:: 0.2
        """
        done: WorkflowTemplate | Callable[[Callable[..., Any]], Callable[..., Any]]
        done = self.workflows.register(name, target, description=description)
        return done

    # -- periodic tasks (beat) ---------------------------------------------------------------
    @property
    def periodic(self) -> PeriodicManager:
        """Periodic entries added, changed, paused and removed at run time
        (:class:`~flask_taskq.periodic.PeriodicManager`).

        .. versionadded:: 0.2
        """
        from .periodic import PeriodicManager

        return PeriodicManager(self)

    def periodic_task(
        self,
        schedule: Any,
        *,
        name: str | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        catch_up: str = "one",
        options: dict[str, Any] | None = None,
        **task_options: Any,
    ) -> Callable[[Callable[..., Any]], Task]:
        """Register a function as a task that beat sends on ``schedule`` (seconds, a
        ``timedelta`` or a :class:`~flask_taskq.crontab`)::

            @tq.periodic_task(crontab(minute=0, hour=3), queue="maintenance")
            def nightly_cleanup(): ...

        ``task_options`` are those of :meth:`task` (``name`` names both the task and the
        entry); ``args``/``kwargs`` are passed to each run, ``options`` are sending options
        (``expires``, ``priority``, ...) and ``catch_up`` is the entry's (``docs/beat.rst``).

        .. versionadded:: 0.2
        """

        def register(func: Callable[..., Any]) -> Task:
            task = self.task(name=name, **task_options)(func)
            self.add_periodic_task(
                schedule,
                task,
                args=args,
                kwargs=kwargs,
                name=task.name,
                catch_up=catch_up,
                **(options or {}),
            )
            return task

        return register

    def add_periodic_task(
        self,
        schedule: Any,
        task: Task | str,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        catch_up: str = "one",
        **options: Any,
    ) -> Entry:
        """Have beat send ``task`` (a task or a task name) with ``args``/``kwargs`` on
        ``schedule``; ``options`` are sending options (``queue``, ``priority``,
        ``expires``, ...). The entry is named ``name``, by default the task name followed by
        the arguments when there are any. An entry of the same name in
        ``TASKQ_BEAT_SCHEDULE`` replaces it.

        .. versionadded:: 0.2
        """
        from .beat import Entry
        from .schedules import to_schedule

        task_name = task if isinstance(task, str) else task.name
        if name is None:
            call = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in (kwargs or {}).items()]
            name = f"{task_name}({', '.join(call)})" if call else task_name
        entry = Entry(
            name=name,
            task=task_name,
            schedule=to_schedule(schedule),
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            options=options,
            catch_up=catch_up,
        )
        self.declared_periodic[name] = entry
        return entry

    def periodic_entries(self, app: Flask | None = None) -> dict[str, Entry]:
        """The periodic entries of ``app`` (default: as in :func:`resolve_state`): those
        declared in code plus ``TASKQ_BEAT_SCHEDULE``, which wins on equal names.
        ``ValueError`` names an entry that is not valid.

        .. versionadded:: 0.2
        """
        from .beat import Entry

        config = resolve_state(app, self).config
        entries = dict(self.declared_periodic)
        for entry_name, spec in (config["TASKQ_BEAT_SCHEDULE"] or {}).items():
            entries[entry_name] = Entry.from_config(entry_name, spec)
        return entries


def _id_source(batch: int) -> Iterator[str]:
    """New task ids, made ``batch`` at a time (:func:`~flask_taskq.message.new_task_ids`)."""
    while True:
        yield from new_task_ids(batch)


def _like(
    first: Message,
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
    serializer: Serializer,
    limit: int | None,
    encode: PlainEncoder | None,
) -> tuple[str, str, int, float | None, bytes]:
    """Id, queue, priority, eta and body of a message like ``first`` (same options) for
    another call, with its own id, encoded by ``encode`` when given (``first`` has no eta
    and no headers); a :class:`Message` is made only to name an argument that cannot be
    encoded or to refuse a message too large."""
    task_id, now = new_task_id(), time.time()
    kwargs = dict(kwargs or {})
    try:
        if encode is not None:
            body = encode(task_id, args, kwargs, first.expires, now)
        else:
            body = serializer.dumps(
                envelope(
                    task_id,
                    first.task,
                    args or (),
                    kwargs,
                    first.queue,
                    first.priority,
                    first.eta,
                    first.expires,
                    0,
                    first.headers,
                    now,
                )
            )
    except (TypeError, ValueError, OverflowError):
        body = b""
    if not body or (limit is not None and len(body) > limit):
        message = first.replace(id=task_id, args=tuple(args or ()), kwargs=kwargs, sent=now)
        message.to_bytes(serializer, limit)  # raises TypeError or MessageTooLarge
    return task_id, first.queue, first.priority, first.eta, body


def _message_of(
    first: Message,
    item: tuple[str, str, int, float | None, bytes],
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
) -> Message:
    """The message of a call sent by :meth:`TaskQueue.send_many` (for ``task_sent``)."""
    return first.replace(id=item[0], args=tuple(args or ()), kwargs=dict(kwargs or {}))
