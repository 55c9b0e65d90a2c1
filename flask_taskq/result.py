"""``AsyncResult``: the handle on a task's state and return value."""

from __future__ import annotations

import sys
import traceback as tb
from typing import TYPE_CHECKING, Any

from . import states
from .exceptions import TaskError, TaskRevokedError
from .exceptions import TimeoutError as TaskTimeoutError

if TYPE_CHECKING:
    from flask import Flask

    from .state import AppState


def exception_meta(exc: BaseException) -> dict[str, Any]:
    """What is stored about a task's exception so another process can rebuild it."""
    cls = type(exc)
    args: list[Any] = []
    for arg in exc.args:
        if isinstance(arg, str | int | float | bool) or arg is None:
            args.append(arg)
        else:
            args.append(repr(arg))
    return {
        "exc_type": cls.__qualname__,
        "exc_module": cls.__module__,
        "exc_message": str(exc),
        "exc_args": args,
        "traceback": "".join(tb.format_exception(exc)),
    }


def rebuild_exception(meta: dict[str, Any]) -> BaseException:
    """The task's exception, of its own type when that type is already imported here
    (modules are never imported on behalf of a result); otherwise a :class:`TaskError`."""
    module = sys.modules.get(meta.get("exc_module") or "")
    cls: Any = module
    for part in (meta.get("exc_type") or "").split("."):
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            exc = cls(*meta.get("exc_args", ()))
        except Exception:
            pass
        else:
            note = "Traceback in the worker:\n" + (meta.get("traceback") or "")
            exc.__notes__ = [note]  # type: ignore[attr-defined,unused-ignore]
            return exc
    name = f"{meta.get('exc_module')}.{meta.get('exc_type')}"
    return TaskError(name, meta.get("exc_message", ""), meta.get("traceback"))


class AsyncResult:
    """The state and result of a task, read from the result backend.

    ``AsyncResult(task_id)`` uses the current app's ``TaskQueue`` (or the single app
    a ``TaskQueue`` is bound to); pass ``app=`` to choose another.
    """

    #: In a workflow, the result of the step before this one (an ``AsyncResult`` or a
    #: ``GroupResult``; see :doc:`workflows`), else None. Known in the process that
    #: sent the workflow only.
    parent: Any = None

    def __init__(self, id: str, app: Flask | None = None, *, state: AppState | None = None) -> None:
        # made for every task sent: nothing more than two attributes when ``state`` is given
        self.id = id
        if state is None:
            from .state import resolve_state

            state = resolve_state(app)
        self._state = state

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _meta(self) -> dict[str, Any]:
        backend = self._state.backend
        if backend is None:
            raise RuntimeError("results are disabled (TASKQ_RESULT_BACKEND = None)")
        return backend.get(self.id) or {"status": states.PENDING}

    @property
    def state(self) -> str:
        """PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED or a custom state."""
        status: str = self._meta()["status"]
        return status

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception if it failed, or the meta of a custom state."""
        meta = self._meta()
        if meta["status"] in (states.FAILURE, states.RETRY) and "exc_type" in meta:
            return rebuild_exception(meta)
        return meta.get("result")

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed task."""
        return self._meta().get("traceback")

    @property
    def date_done(self) -> float | None:
        """Unix time the task finished."""
        return self._meta().get("date_done")

    @property
    def name(self) -> str | None:
        """The task's name, as the stored document says it: every state but ``SUCCESS``
        holds it, a ``SUCCESS`` only with ``TASKQ_RESULT_EXTENDED``; None otherwise
        (nothing stored yet, or a success written without it)."""
        return self._meta().get("task")

    @property
    def args(self) -> list[Any] | None:
        """The positional arguments the task ran with (a list, as stored), from a
        document written with ``TASKQ_RESULT_EXTENDED``; None otherwise."""
        return self._meta().get("args")

    @property
    def kwargs(self) -> dict[str, Any] | None:
        """The keyword arguments the task ran with, with ``TASKQ_RESULT_EXTENDED``;
        None otherwise."""
        return self._meta().get("kwargs")

    @property
    def queue(self) -> str | None:
        """The queue the task ran from, with ``TASKQ_RESULT_EXTENDED``; None otherwise."""
        return self._meta().get("queue")

    @property
    def retries(self) -> int | None:
        """The attempt that wrote the document (0 for the first), with
        ``TASKQ_RESULT_EXTENDED``; None otherwise."""
        return self._meta().get("retries")

    @property
    def worker(self) -> str | None:
        """The name of the worker that ran the task, with ``TASKQ_RESULT_EXTENDED``
        (None in eager mode, or without the setting)."""
        return self._meta().get("worker")

    def ready(self) -> bool:
        """True once the task succeeded, failed or was revoked."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """True if the task succeeded."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """True if the task failed."""
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Blocks without polling. Raises :class:`flask_taskq.TimeoutError` after ``timeout``
        seconds, also when Redis stops answering (each read is bounded by the time left),
        and :class:`flask_taskq.BrokerConnectionError` when Redis cannot be reached until
        then (at once without ``timeout``); with ``propagate`` re-raises the task's
        exception.
        """
        backend = self._state.backend
        if backend is None:
            raise RuntimeError("results are disabled (TASKQ_RESULT_BACKEND = None)")
        meta = backend.wait(self.id, timeout)
        if meta is None:
            raise TaskTimeoutError(f"task {self.id} not ready after {timeout} s")
        return self._outcome(meta, propagate)

    @staticmethod
    def _outcome(meta: dict[str, Any], propagate: bool) -> Any:
        status = meta["status"]
        if status == states.FAILURE:
            exc = rebuild_exception(meta)
            if propagate:
                raise exc
            return exc
        if status == states.REVOKED:
            exc = TaskRevokedError(meta.get("reason") or "revoked")
            if propagate:
                raise exc
            return exc
        return meta.get("result")

    def revoke(self, terminate: bool = False) -> None:
        """Never start this task; with ``terminate`` also stop it if it is running.

        Stored in Redis for ``TASKQ_RESULT_EXPIRES`` seconds, so workers started later
        honour it too. A revoked task's state becomes REVOKED when a worker meets it.
        """
        self._state.revocations.revoke([self.id], terminate=terminate)

    def forget(self) -> None:
        """Delete the stored result."""
        if self._state.backend is not None:
            self._state.backend.forget(self.id)
