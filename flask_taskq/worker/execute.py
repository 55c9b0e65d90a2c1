"""Running one message: the single execution path shared by workers, the memory broker
and eager mode."""

from __future__ import annotations

import logging
import time
from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..exceptions import NotRegistered, Reject, Retry
from ..message import Message
from ..result import exception_meta
from ..task import Request, reset_request, retry_countdown, set_request
from .guard import TaskTerminated

if TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_taskq.worker")


@dataclass(slots=True)
class Outcome:
    """What running a message produced."""

    status: str
    data: bytes | None  # the encoded result document, None when results are not kept
    runtime: float = 0.0
    exception: BaseException | None = None
    dead_reason: str | None = None  # set when the message belongs in the dead-letter store
    retry: tuple[bytes, float] | None = None  # (next attempt's message, due unix time)
    requeue: bool = False  # Reject(requeue=True): put the message back as it is

    @property
    def traceback(self) -> str:
        """The formatted traceback of the exception, if any."""
        return exception_meta(self.exception)["traceback"] if self.exception else ""


class Executor:
    """Runs messages inside a fresh application context of ``state.app``."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.app = state.app
        self.tasks = state.taskqueue.tasks
        self.dumps = state.serializer.dumps
        self.keep_results = state.backend is not None

    def _document(
        self, message: Message, status: str, fields: dict[str, Any], keep: bool
    ) -> bytes | None:
        if not keep:
            return None
        doc = {"status": status, "task": message.task, "date_done": time.time(), **fields}
        if status == states.SUCCESS:
            return self.dumps(doc)
        try:
            return self.dumps(doc)
        except Exception as exc:  # a failure is recorded whatever its exception holds
            logger.warning(
                "could not encode the %s document (%s: %s); storing its text",
                status,
                type(exc).__name__,
                _short(exc),
            )
            plain = {k: _plain(v) for k, v in doc.items()}
            try:
                return self.dumps(plain)
            except Exception:
                return self.dumps(
                    {
                        k: _plain(doc.get(k))
                        for k in ("status", "task", "date_done", "exc_type", "exc_module")
                    }
                )

    def execute(
        self,
        message: Message,
        delivery_count: int = 1,
        eager: bool = False,
        revoked: Container[str] = (),
        options: dict[str, Any] | None = None,
    ) -> Outcome:
        """Run ``message`` and describe the outcome; never raises for task errors.
        A message whose id is in ``revoked`` is not run. ``options`` are the task's
        options for this app when the caller has them already."""
        task = self.tasks.get(message.task)
        if task is None:
            exc = NotRegistered(
                f"task {message.task!r} is not registered in this worker "
                "(is its module in TASKQ_IMPORTS?)"
            )
            return Outcome(
                states.FAILURE,
                self._document(message, states.FAILURE, exception_meta(exc), self.keep_results),
                exception=exc,
                dead_reason=str(exc),
            )
        opts = options or task.options_for(self.state)
        keep = eager or (self.keep_results and not opts["ignore_result"])
        if message.expires is not None and time.time() > message.expires:
            return self._revoked(
                task, message, keep, f"expired at {message.expires:.3f}", expired=True
            )
        if message.id in revoked:
            return self._revoked(task, message, keep, "revoked")
        request = Request(
            message.id,
            message.task,
            message.args,
            message.kwargs,
            message.retries,
            message.queue,
            message.priority,
            message.eta,
            message.headers,
            delivery_count,
            eager,
        )
        token = set_request(request)
        ctx = self.app.app_context()
        ctx.push()
        error: BaseException | None = None
        start = time.perf_counter()
        try:
            if signals.task_prerun.receivers:
                signals.send_safely(
                    signals.task_prerun,
                    task,
                    task_id=message.id,
                    task=task,
                    args=message.args,
                    kwargs=message.kwargs,
                )
            try:
                retval = task.run(*message.args, **message.kwargs)  # bound when bind=True
            except Exception as exc:
                error = exc
            except TaskTerminated:
                return self._revoked(task, message, keep, "terminated", terminated=True)
            runtime = time.perf_counter() - start
            outcome = self._finish(
                task, message, request, keep, runtime, error, None if error else retval
            )
            if signals.task_postrun.receivers:
                signals.send_safely(
                    signals.task_postrun,
                    task,
                    task_id=message.id,
                    task=task,
                    args=message.args,
                    kwargs=message.kwargs,
                    retval=error or retval,
                    state=outcome.status,
                )
        finally:
            ctx.pop(error)
            reset_request(token)
        return outcome

    def _finish(
        self,
        task: Any,
        message: Message,
        request: Request,
        keep: bool,
        runtime: float,
        error: BaseException | None,
        retval: Any,
    ) -> Outcome:
        if error is None:
            try:
                data = self._document(message, states.SUCCESS, {"result": retval}, keep)
            except Exception as exc:  # e.g. RecursionError for a deeply nested result
                error = TypeError(
                    f"result of task {task.name!r} cannot be encoded by the "
                    f"{self.state.serializer.name} serializer: "
                    f"{type(exc).__name__}: {_short(exc)}"
                )
            else:
                if logger.isEnabledFor(logging.INFO):
                    logger.info("succeeded in %.6fs: %.200r", runtime, retval)
                if signals.task_success.receivers:
                    signals.send_safely(
                        signals.task_success, task, task=task, task_id=message.id, result=retval
                    )
                return Outcome(states.SUCCESS, data, runtime)
        if isinstance(error, Reject):
            return self._reject(message, error, keep, runtime, request.is_eager)
        retry_at = self._retry_at(task, request, error)
        if retry_at is not None:
            return self._retry(task, message, request, keep, runtime, error, retry_at)
        meta = exception_meta(error)
        logger.error(
            "raised %s in %.6fs\n%s", type(error).__name__, runtime, meta["traceback"].rstrip()
        )
        if signals.task_failure.receivers:
            signals.send_safely(
                signals.task_failure,
                task,
                task=task,
                task_id=message.id,
                exception=error,
                args=message.args,
                kwargs=message.kwargs,
                traceback=meta["traceback"],
            )
        dead = None
        if request.retries_exhausted:
            dead = (
                f"retries exhausted after {request.retries} "
                f"(max_retries={task.options_for(self.state)['max_retries']}): "
                f"{type(error).__name__}: {error}"
            )
        return Outcome(
            states.FAILURE,
            self._document(message, states.FAILURE, meta, keep),
            runtime,
            exception=error,
            dead_reason=dead,
        )

    def _revoked(
        self,
        task: Any,
        message: Message,
        keep: bool,
        reason: str,
        expired: bool = False,
        terminated: bool = False,
    ) -> Outcome:
        logger.warning("revoked: %s", reason)
        if signals.task_revoked.receivers:
            signals.send_safely(
                signals.task_revoked,
                task,
                task=task,
                task_id=message.id,
                reason=reason,
                expired=expired,
                terminated=terminated,
            )
        doc = self._document(message, states.REVOKED, {"reason": reason}, keep)
        return Outcome(states.REVOKED, doc)

    def _retry_at(self, task: Any, request: Request, error: BaseException) -> float | None:
        """When to run again, or None if this failure is final."""
        if isinstance(error, Retry):
            if error.when is not None:
                return error.when
            return time.time() + retry_countdown(task.options_for(self.state), request.retries)
        if not task.autoretry_for or not isinstance(error, task.autoretry_for):
            return None
        opts = task.options_for(self.state)
        if opts["max_retries"] is not None and request.retries >= opts["max_retries"]:
            request.retries_exhausted = True
            return None
        return time.time() + retry_countdown(opts, request.retries)

    def _retry(
        self,
        task: Any,
        message: Message,
        request: Request,
        keep: bool,
        runtime: float,
        error: BaseException,
        retry_at: float,
    ) -> Outcome:
        cause = error.exc if isinstance(error, Retry) and error.exc is not None else error
        body = message.replace(retries=message.retries + 1, eta=retry_at).to_bytes(
            self.state.serializer
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "retry %d in %.2fs after %s: %s",
                message.retries + 1,
                retry_at - time.time(),
                type(cause).__name__,
                cause,
            )
        if signals.task_retry.receivers:
            signals.send_safely(
                signals.task_retry,
                task,
                task=task,
                task_id=message.id,
                reason=cause,
                request=request,
                eta=retry_at,
            )
        doc = self._document(message, states.RETRY, exception_meta(cause), keep) if keep else None
        return Outcome(states.RETRY, doc, runtime, exception=cause, retry=(body, retry_at))

    def _reject(
        self, message: Message, error: Reject, keep: bool, runtime: float, eager: bool
    ) -> Outcome:
        if error.requeue and not eager:  # in eager mode there is no queue: it fails
            logger.warning("rejected, back to the queue: %s", error.reason)
            return Outcome(states.PENDING, None, runtime, requeue=True)
        logger.error("rejected: %s", error.reason)
        doc = self._document(message, states.FAILURE, exception_meta(error), keep)
        return Outcome(
            states.FAILURE, doc, runtime, exception=error, dead_reason=f"rejected: {error.reason}"
        )


def _short(value: object, limit: int = 200) -> str:
    """``str(value)`` cut to ``limit`` characters, never raising."""
    try:
        text = str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: object) -> object:
    """``value`` as something every serializer encodes: a number or None as it is,
    anything else as text with any unencodable character escaped."""
    if (
        value is None
        or isinstance(value, bool | float)
        or (isinstance(value, int) and -(2**63) <= value < 2**63)
    ):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    text = value if isinstance(value, str) else _short(value, 100_000)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
