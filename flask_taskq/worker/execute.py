"""``execute()``: running one task and classifying its outcome, the core of the pipeline
(:mod:`.hooks`) shared by workers, the memory broker and eager mode."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..exceptions import NotRegistered, Reject, Retry
from ..message import Message
from ..result import exception_meta
from ..task import autoretry_at
from .aio import run_coroutine
from .guard import TaskTerminated

if TYPE_CHECKING:
    from ..state import AppState
    from ..task import Task
    from .hooks.base import Context

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
    """The core of the pipeline: runs a task and classifies what it did. What wraps the run
    (app context, revocation, signals, results...) are hooks (:mod:`.hooks`)."""

    def __init__(self, state: AppState, worker: str | None = None) -> None:
        self.state = state
        self.app = state.app
        self.tasks = state.taskqueue.tasks
        self.dumps = state.serializer.dumps
        self.keep_results = state.backend is not None
        #: TASKQ_RESULT_EXTENDED: documents say what ran (:func:`extended_fields`);
        #: without it a SUCCESS leaves out even the task name (docs/results.rst).
        self.extended = bool(state.config["TASKQ_RESULT_EXTENDED"])
        #: The worker's name, for the extended documents (None in eager mode).
        self.worker = worker

    def keeps(self, ctx: Context) -> bool:
        """Whether the outcome of ``ctx`` gets a result document."""
        return ctx.eager or (self.keep_results and not ctx.options["ignore_result"])

    def _document(
        self, message: Message, status: str, fields: dict[str, Any], keep: bool
    ) -> bytes | None:
        if not keep:
            return None
        # date_done to the millisecond, no "result" for None and no task name in a
        # SUCCESS (every reader uses .get): a no-op's document fits a smaller Redis
        # allocation (docs/data-model.rst)
        if self.extended:
            doc = {
                "status": status,
                **extended_fields(message, self.worker),
                "date_done": round(time.time(), 3),
                **fields,
            }
        elif status == states.SUCCESS:
            doc = {"status": status, "date_done": round(time.time(), 3), **fields}
        else:
            doc = {
                "status": status,
                "task": message.task,
                "date_done": round(time.time(), 3),
                **fields,
            }
        if status == states.SUCCESS:
            if doc["result"] is None:
                del doc["result"]
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

    def execute(self, ctx: Context) -> Outcome:
        """Run ``ctx``'s task and describe the outcome; never raises for task errors."""
        task, message = ctx.task, ctx.message
        if task is None:
            return self._not_registered(message)
        keep = self.keeps(ctx)
        start = time.perf_counter()
        try:
            retval = task.run(*message.args, **message.kwargs)  # bound when bind=True
            if task.is_async:  # eager mode: a worker hands coroutines to its loop (.aio)
                retval = run_coroutine(retval)
        except Exception as exc:
            ctx.error = exc
            return self._finish(ctx, task, keep, time.perf_counter() - start, exc, None)
        except TaskTerminated:
            return self.revoked(ctx, "terminated", terminated=True)
        ctx.retval = retval
        return self._finish(ctx, task, keep, time.perf_counter() - start, None, retval)

    def conclude(
        self, ctx: Context, runtime: float, error: BaseException | None, retval: Any
    ) -> Outcome:
        """The outcome of a run that ended elsewhere (an ``async def`` task on the event
        loop, :mod:`.aio`), as :meth:`execute` would have described it."""
        task = ctx.task
        assert task is not None
        if isinstance(error, TaskTerminated):
            return self.revoked(ctx, "terminated", terminated=True)
        if error is not None:
            ctx.error = error
        else:
            ctx.retval = retval
        return self._finish(ctx, task, self.keeps(ctx), runtime, error, retval)

    def _not_registered(self, message: Message) -> Outcome:
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

    def _finish(
        self,
        ctx: Context,
        task: Task,
        keep: bool,
        runtime: float,
        error: BaseException | None,
        retval: Any,
    ) -> Outcome:
        message = ctx.message
        if error is None:
            try:
                data = self._document(message, states.SUCCESS, {"result": retval}, keep)
            except Exception as exc:  # e.g. RecursionError for a deeply nested result
                error = TypeError(
                    f"result of task {task.name!r} cannot be encoded by the "
                    f"{self.state.serializer.name} serializer: "
                    f"{type(exc).__name__}: {_short(exc)}"
                )
                ctx.error = error
            else:
                if logger.isEnabledFor(logging.INFO):
                    logger.info("succeeded in %.6fs: %.200r", runtime, retval)
                if signals.task_success.receivers:
                    signals.send_safely(
                        signals.task_success, task, task=task, task_id=message.id, result=retval
                    )
                return Outcome(states.SUCCESS, data, runtime)
        if isinstance(error, Reject):
            return self._reject(message, error, keep, runtime, ctx.eager)
        request = ctx.request
        retries = message.retries
        retry_at = autoretry_at(task, ctx.options, retries, error)
        if retry_at is not None:
            return self._retry(ctx, task, keep, runtime, error, retry_at)
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
        if task.autoretry_for and isinstance(error, task.autoretry_for) and request is not None:
            request.retries_exhausted = True  # autoretry_at found no retry left
        if request is not None and request.retries_exhausted:
            dead = (
                f"retries exhausted after {retries} "
                f"(max_retries={ctx.options['max_retries']}): "
                f"{type(error).__name__}: {error}"
            )
        return Outcome(
            states.FAILURE,
            self._document(message, states.FAILURE, meta, keep),
            runtime,
            exception=error,
            dead_reason=dead,
        )

    def revoked(
        self, ctx: Context, reason: str, expired: bool = False, terminated: bool = False
    ) -> Outcome:
        """The outcome of a task that is not run (or stopped): revoked, expired or
        terminated."""
        logger.warning("revoked: %s", reason)
        task = ctx.task
        if signals.task_revoked.receivers:
            signals.send_safely(
                signals.task_revoked,
                task,
                task=task,
                task_id=ctx.message.id,
                reason=reason,
                expired=expired,
                terminated=terminated,
            )
        doc = self._document(ctx.message, states.REVOKED, {"reason": reason}, self.keeps(ctx))
        return Outcome(states.REVOKED, doc)

    def _retry(
        self,
        ctx: Context,
        task: Task,
        keep: bool,
        runtime: float,
        error: BaseException,
        retry_at: float,
    ) -> Outcome:
        message = ctx.message
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
                request=ctx.request,
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


def extended_fields(message: Message, worker: str | None) -> dict[str, Any]:
    """What a result document says about the run with ``TASKQ_RESULT_EXTENDED`` (Celery's
    ``result_extended``, with ``task`` for Celery's ``name``): the task's name, arguments,
    queue, attempt (``retries``) and, when known, the worker's name."""
    fields: dict[str, Any] = {
        "task": message.task,
        "args": list(message.args),
        "kwargs": message.kwargs,
        "queue": message.queue,
        "retries": message.retries,
    }
    if worker is not None:
        fields["worker"] = worker
    return fields


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
