"""Exceptions raised by flask-taskq, all importable from :mod:`flask_taskq`."""

from __future__ import annotations

import builtins


class TaskQueueError(Exception):
    """Base class of the errors flask-taskq raises itself."""


class BrokerConnectionError(TaskQueueError, ConnectionError):
    """Redis could not be reached, even after retrying briefly.

    Raised by sending (``delay``, ``apply_async``, ``send_task``, ``send_many``) after
    ``TASKQ_ENQUEUE_TIMEOUT`` seconds, and by ``AsyncResult.get``. When sending,
    :attr:`task_id` (one message) or :attr:`task_ids` (``send_many``'s failed chunk) name
    the messages it was about; :attr:`maybe_sent` is true when Redis stopped answering
    after the command was written, so the message may have been enqueued anyway. Resend
    with ``apply_async(..., task_id=exc.task_id)`` so that a duplicate keeps the same id
    (see :ref:`enqueue-errors`).
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        task_ids: tuple[str, ...] = (),
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message)
        #: The id of the message that could not be confirmed as sent (None for a batch).
        self.task_id = task_id
        #: The ids of every message the failed call was about.
        self.task_ids = task_ids or ((task_id,) if task_id is not None else ())
        #: True when the command was written before Redis stopped answering: the message
        #: may have been enqueued.
        self.maybe_sent = maybe_sent


class TimeoutError(TaskQueueError, builtins.TimeoutError):
    """``AsyncResult.get(timeout=...)`` gave up waiting for the result."""


class NotRegistered(TaskQueueError, KeyError):
    """No task of that name is registered."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class MessageTooLarge(TaskQueueError, ValueError):
    """The encoded message is larger than ``TASKQ_MAX_MESSAGE_BYTES``."""


class Retry(TaskQueueError):
    """Raised by ``self.retry()`` to tell the worker to schedule a retry."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | None = None,
    ) -> None:
        super().__init__(message or "Retry requested")
        self.exc = exc
        self.when = when


class MaxRetriesExceededError(TaskQueueError):
    """``self.retry()`` found no retries left and was given no exception to raise."""


class Reject(TaskQueueError):
    """Raised by a task to reject its message (it goes to the dead-letter store)."""

    def __init__(self, reason: str = "rejected", requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.requeue = requeue


class SoftTimeLimitExceeded(TaskQueueError):
    """Raised inside a task when its ``soft_time_limit`` has passed."""


class TimeLimitExceeded(TaskQueueError):
    """The task ran past its ``time_limit`` and its process was killed."""


class TaskError(TaskQueueError):
    """A task failed with an exception that cannot be rebuilt in this process.

    It carries the remote exception's type name, message and traceback.
    """

    def __init__(self, exc_type: str, message: str, traceback: str | None = None) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback


class WorkerLostError(TaskQueueError):
    """A task was started ``TASKQ_MAX_DELIVERIES`` times and never finished: it keeps
    killing its worker. It was moved to the dead-letter store."""


class TaskRevokedError(TaskQueueError):
    """``AsyncResult.get()`` on a task that was revoked (or expired before it ran)."""


class DecodeError(TaskQueueError, ValueError):
    """A message body could not be decoded (it goes to the dead-letter store)."""


class ConcurrencyKeyError(TaskQueueError, ValueError):
    """A task's ``concurrency_key`` is unusable: it names no argument of the task, it
    raised, or the call lacks the argument (the task then fails with this error)."""
