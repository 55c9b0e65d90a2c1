"""flask-taskq: a Flask extension with a distributed task queue built in."""

import importlib
from typing import TYPE_CHECKING, Any

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
from .shared import SharedTask, shared_task
from .state import AppState
from .task import Request, Task
from .version import __version__

if TYPE_CHECKING:
    from .canvas import ChordError, GroupResult, Signature, chain, chord, group, signature
    from .schedules import crontab

#: Names imported on first use (PEP 562): a worker that runs no workflow and no beat does
#: not load canvas, schedules and croniter.
_LAZY = {
    "ChordError": "canvas",
    "GroupResult": "canvas",
    "Signature": "canvas",
    "chain": "canvas",
    "chord": "canvas",
    "group": "canvas",
    "signature": "canvas",
    "crontab": "schedules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
