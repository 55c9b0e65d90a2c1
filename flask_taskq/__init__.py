"""flask-taskq: a Flask extension with a distributed task queue built in."""

from .canvas import ChordError, GroupResult, Signature, chain, chord, group, signature
from .exceptions import (
    BrokerConnectionError,
    ConcurrencyKeyError,
    MaxRetriesExceededError,
    MessageTooLarge,
    NotRegistered,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskError,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)
from .extension import TaskQueue
from .message import Message
from .result import AsyncResult
from .schedules import crontab
from .shared import SharedTask, shared_task
from .state import AppState
from .task import Request, Task
from .version import __version__

__all__ = [
    "AppState",
    "AsyncResult",
    "BrokerConnectionError",
    "ChordError",
    "ConcurrencyKeyError",
    "GroupResult",
    "MaxRetriesExceededError",
    "Message",
    "MessageTooLarge",
    "NotRegistered",
    "Reject",
    "Request",
    "Retry",
    "SharedTask",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TaskQueue",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
    "__version__",
    "chain",
    "chord",
    "crontab",
    "group",
    "shared_task",
    "signature",
]
