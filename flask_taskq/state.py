"""Per-app state and how to find it: :class:`AppState` (kept at
``app.extensions["taskq"]``), :func:`resolve_state`, the registry of TaskQueues and
:func:`import_task_modules`.

This module sits below everything that sends, runs or shows tasks (``task``,
``result``, ``canvas``, ``worker``, ``beat``, ``cli``, ``dashboard``), which all reach the
app's broker, store and result backend through an ``AppState``; ``extension`` (the
composition root) creates it. See "Layers" in ``docs/design.rst``.
"""

from __future__ import annotations

import importlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context

from .backend import ResultBackend, backend_from_url
from .broker import Broker, broker_from_url
from .broker.amqp import is_amqp_url
from .broker.amqp import store_url as amqp_store_url
from .config import task_defaults
from .exceptions import BrokerConnectionError
from .message import Message
from .revocation import Revocations
from .routing import Router
from .serializer import Serializer, get_serializer
from .signing import SignedSerializer
from .store import Store

if TYPE_CHECKING:
    from .extension import TaskQueue

#: Every TaskQueue ever created, to resolve ``AsyncResult(id)`` without an app.
taskqueues: weakref.WeakSet[TaskQueue] = weakref.WeakSet()


def register_taskqueue(taskqueue: TaskQueue) -> None:
    """Add ``taskqueue`` to :data:`taskqueues` (``TaskQueue()`` calls it)."""
    taskqueues.add(taskqueue)


def redact_url(url: str) -> str:
    """``url`` with its credentials masked (``redis://***@host:6379/0``), fit to show."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class AppState:
    """What ``TaskQueue`` keeps per Flask app, stored at ``app.extensions["taskq"]``.

    ``start_memory_worker`` (given by ``TaskQueue.init_app``) starts the in-process
    worker of ``memory://`` on the first send; without it nothing in this process runs
    what is sent there.
    """

    def __init__(
        self,
        taskqueue: TaskQueue,
        app: Flask,
        start_memory_worker: Callable[[AppState], Any] | None = None,
    ) -> None:
        config = app.config
        self.taskqueue = taskqueue
        self.app = app
        self.config = config
        self.eager: bool = bool(config["TASKQ_ALWAYS_EAGER"])
        self.serializer: Serializer = get_serializer(config["TASKQ_SERIALIZER"])
        if config["TASKQ_SIGNING_KEY"]:
            self.serializer = SignedSerializer(self.serializer, config["TASKQ_SIGNING_KEY"])
        self.default_queue: str = config["TASKQ_DEFAULT_QUEUE"]
        self.max_message_bytes: int = int(config["TASKQ_MAX_MESSAGE_BYTES"])
        self.key_prefix: str = config["TASKQ_KEY_PREFIX"]
        self.result_expires: int = int(config["TASKQ_RESULT_EXPIRES"] or 0)
        self.router = Router(config["TASKQ_ROUTES"])
        #: Defaults of task options from ``TASKQ_TASK_*``; a task's own options win.
        self.task_defaults: dict[str, Any] = task_defaults(config)
        self.broker_url: str = config["TASKQ_BROKER_URL"]
        self.result_url: str | None = config["TASKQ_RESULT_BACKEND"]
        self.broker: Broker = self.new_broker()
        #: Shared state beside the transport (see :mod:`flask_taskq.store`).
        self.store: Store = self.broker.store()
        self.backend: ResultBackend | None = self.new_backend()
        self.revocations: Revocations = self.new_revocations(self.broker)
        #: Starts the in-process worker of ``memory://`` (given by the extension, which
        #: composes the worker with the app) and returns it; called on the first send.
        self._start_memory_worker = start_memory_worker
        self._memory_worker: Any = None
        self._lock = threading.Lock()
        #: Per thread, while a worker sends the links of a finished task: ``.take(queue,
        #: priority, body)`` keeps a plain send to go out with the task's
        #: acknowledgement (True) or declines it (False: sent now). See
        #: ``worker.consumer.Consumer.deferring_sends``.
        self.send_sink = threading.local()

    @property
    def is_memory(self) -> bool:
        """True for the in-process ``memory://`` broker."""
        return self.broker_url.startswith("memory://")

    def new_broker(self) -> Broker:
        """A broker with its own connections (each worker process makes its own)."""
        if self.is_memory and getattr(self, "broker", None) is not None:
            return self.broker
        if self.is_memory:
            return broker_from_url(self.broker_url, key_prefix=self.key_prefix)
        options: dict[str, Any] = {}
        if is_amqp_url(self.broker_url):  # RabbitMQ: shared state in a Redis store
            options["store_url"] = amqp_store_url(self.config)
            options["consumer_timeout"] = float(self.config["TASKQ_AMQP_CONSUMER_TIMEOUT"])
            options["visibility_timeout"] = float(self.config["TASKQ_VISIBILITY_TIMEOUT"])
            options["queue_type"] = str(self.config["TASKQ_AMQP_QUEUE_TYPE"])
        else:  # Redis: single, Sentinel or Cluster
            options["wait_replicas"] = int(self.config.get("TASKQ_WAIT_REPLICAS") or 0)
            options["queue_shards"] = self.config.get("TASKQ_QUEUE_SHARDS") or {}
            options["idle_consumer_ttl"] = float(self.config["TASKQ_IDLE_CONSUMER_TTL"] or 0)
        return broker_from_url(
            self.broker_url,
            key_prefix=self.key_prefix,
            dead_letter_max_bytes=int(self.config["TASKQ_DEAD_LETTER_MAX_BYTES"]),
            **options,
        )

    def new_revocations(self, broker: Broker) -> Revocations:
        """Revocations read and written through ``broker``'s store (on ``memory://`` one
        copy shared by the app and its in-process workers)."""
        if self.is_memory and getattr(self, "revocations", None) is not None:
            return self.revocations
        return Revocations(broker.store().revocations, self.result_expires)

    def requeue_dead(self, queue: str, entry_ids: list[str]) -> int:
        """Send dead letters of ``queue`` back to it, forgetting the result stored when
        they died (so ``get()`` waits for the new run) and where they started (so that a
        signed one is not taken for a replay); return how many moved."""
        task_ids = []
        for entry_id in entry_ids:
            row = self.broker.dead_letter_get(queue, entry_id)
            if row is not None and row.get("id") not in (None, "", "?"):
                task_ids.append(str(row["id"]))
        if self.backend is not None:
            for task_id in task_ids:
                self.backend.forget(task_id)
        self.store.replay.forget(task_ids)
        return self.broker.requeue_dead(queue, entry_ids, serializer=self.serializer)

    def unreachable(self, exc: BaseException) -> str:
        """One line for ``exc``, an error of a server this app talks to: which server
        could not be reached (RabbitMQ, Redis, the result database) and its URL, with
        the credentials masked. On RabbitMQ, a Redis error is its store's."""
        from .broker.blame import broker_server, server_of

        ours = broker_server(self.broker)
        server = server_of(exc, ours)
        if server == ours:
            url = self.broker_url
        elif server == "Redis":
            url = amqp_store_url(self.config) or self.broker_url
        else:
            server, url = "the result database", self.result_url or ""
        return f"cannot reach {server} at {redact_url(url)}: {exc}"

    def new_backend(self) -> ResultBackend | None:
        """A result backend with its own connections, or None when results are off."""
        if self.eager:
            from .backend.memory import MemoryBackend

            return MemoryBackend(serializer=self.serializer)
        if not self.result_url:
            return None
        if self.result_url.startswith("memory://") and getattr(self, "backend", None):
            return self.backend
        return backend_from_url(
            self.result_url, key_prefix=self.key_prefix, serializer=self.serializer, app=self.app
        )

    def enqueue(self, message: Message, body: bytes, unique: tuple[str, int] | None = None) -> str:
        """Hand ``body`` to the broker, retrying briefly while Redis is unreachable.
        With ``unique=(key, ttl)`` only if no task holds ``key``; returns the id of the
        task that holds it (``message.id`` when this one was enqueued)."""
        if unique is None:
            take = getattr(self.send_sink, "take", None)
            if (
                take is not None
                and message.eta is None
                and take(message.queue, message.priority, body)
            ):
                return message.id
            self.retrying(
                self.broker.enqueue,
                message.queue,
                message.priority,
                body,
                message.eta,
                task_ids=(message.id,),
            )
            owner = message.id
        else:
            owner = self.retrying(
                self.broker.enqueue_unique,
                message.queue,
                message.priority,
                body,
                message.eta,
                unique[0],
                message.id,
                unique[1],
                task_ids=(message.id,),
            )
        if self.is_memory:
            self._ensure_memory_worker()
        return owner

    def enqueue_many(self, items: list[tuple[str, str, int, float | None, bytes]]) -> None:
        """Hand several messages (``(task id, queue, priority, eta, body)``) to the broker
        in one round trip (retrying like :meth:`enqueue`)."""
        self.retrying(
            self.broker.enqueue_many,
            [(queue, priority, body, eta) for _, queue, priority, eta, body in items],
            task_ids=tuple(item[0] for item in items),
        )
        if self.is_memory:
            self._ensure_memory_worker()

    def retrying(self, call: Callable[..., Any], *args: Any, task_ids: tuple[str, ...] = ()) -> Any:
        """``call(*args)``, retried with backoff for up to ``TASKQ_ENQUEUE_TIMEOUT`` seconds
        while the broker is unreachable, each attempt bounded by the time left; then
        :class:`BrokerConnectionError` naming ``task_ids``."""
        timeout = float(self.config["TASKQ_ENQUEUE_TIMEOUT"])
        start = time.monotonic()
        try:  # the first attempt, on every send: nothing more than the call
            return call(*args, timeout=max(timeout, 0.01))
        except self.broker.connection_errors as exc:
            return self._retry(call, args, task_ids, timeout, start + timeout, exc)

    def _retry(
        self,
        call: Callable[..., Any],
        args: tuple[Any, ...],
        task_ids: tuple[str, ...],
        timeout: float,
        deadline: float,
        exc: BaseException,
    ) -> Any:
        """The attempts of :meth:`retrying` after a first one failed with ``exc``."""
        delay = 0.05
        attempts = 1
        sent = self.broker.maybe_sent(exc)
        while True:
            if time.monotonic() + delay > deadline or self.broker.resend_unsafe(exc):
                raise _enqueue_error(
                    self.broker_url, attempts, timeout, exc, task_ids, sent
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            attempts += 1
            try:
                return call(*args, timeout=max(deadline - time.monotonic(), 0.01))
            except self.broker.connection_errors as again:
                exc = again
                sent = sent or self.broker.maybe_sent(exc)

    def _ensure_memory_worker(self) -> None:
        if self._memory_worker is None and self._start_memory_worker is not None:
            with self._lock:
                if self._memory_worker is None:
                    self._memory_worker = self._start_memory_worker(self)


def _enqueue_error(
    url: str,
    attempts: int,
    timeout: float,
    exc: BaseException,
    task_ids: tuple[str, ...],
    sent: bool,
) -> BrokerConnectionError:
    """The error of a send that did not get through within ``TASKQ_ENQUEUE_TIMEOUT``."""
    what = (
        f"task {task_ids[0]}"
        if len(task_ids) == 1
        else f"{len(task_ids)} tasks"
        if task_ids
        else "the message"
    )
    text = (
        f"cannot reach the broker at {redact_url(url)} within TASKQ_ENQUEUE_TIMEOUT "
        f"({timeout:g} s, {attempts} attempt(s)): {exc}"
    )
    if sent:
        text += (
            f"; {what} was written to Redis before it stopped answering, so it may "
            "be enqueued anyway: to resend, reuse the id (task_id=exc.task_id; see "
            "'Errors when sending' in the docs)"
        )
    else:
        text += f"; {what} was not sent"
    return BrokerConnectionError(
        text,
        task_id=task_ids[0] if len(task_ids) == 1 else None,
        task_ids=task_ids,
        maybe_sent=sent,
    )


def resolve_state(app: Flask | None = None, taskqueue: TaskQueue | None = None) -> AppState:
    """The ``AppState`` to use: ``app``'s, else the current app's, else that of the single
    app a TaskQueue is bound to; otherwise a RuntimeError."""
    if app is None and has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app is not None:
        state: AppState | None = app.extensions.get("taskq")
        if state is None:
            raise RuntimeError(
                f"the app {app.name!r} has no TaskQueue: call tq.init_app(app) first"
            )
        if taskqueue is not None and state.taskqueue is not taskqueue:
            raise RuntimeError(
                f"the app {app.name!r} is bound to another TaskQueue than this task's"
            )
        return state
    candidates = [taskqueue] if taskqueue is not None else list(taskqueues)
    bound = [a for tq in candidates for a in tq.bound_apps()]
    if len(bound) == 1:
        found: AppState = bound[0].extensions["taskq"]
        return found
    raise RuntimeError(
        "no Flask app to send the task with: push an app context (with app.app_context(): "
        "...)" + ("" if not bound else f"; {len(bound)} apps are bound, so none is implied")
    )


def import_task_modules(app: Flask) -> list[str]:
    """Import the modules named in ``app``'s ``TASKQ_IMPORTS`` (a list, or one name), so
    that the tasks they define are registered; the worker and beat call it at start.
    Return the names. ``ImportError`` names the module that cannot be imported."""
    names = app.config.get("TASKQ_IMPORTS") or []
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"TASKQ_IMPORTS: cannot import {name!r}: {exc}") from exc
    return names
