"""Recent failures as the readers show them (the dashboard's failures page and ``flask
taskq inspect failed``): the store's list of tasks that failed without being
dead-lettered (:meth:`~flask_taskq.monitor.Monitor.failures`) joined with their results.

It reads through the store and the result backend only, so both readers sit above it and
neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .exceptions import DecodeError
from .message import Message
from .monitor import Monitor

if TYPE_CHECKING:
    from .state import AppState


def call_preview(args: Sequence[Any], kwargs: dict[str, Any], limit: int = 200) -> str:
    """``args`` and ``kwargs`` as in a call: ``1, 'a', key=2``."""
    text = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return text if len(text) <= limit else text[:limit] + "..."


def exception_line(doc: dict[str, Any] | None) -> str | None:
    """``ValueError: bad input`` from a result document holding an exception, else None."""
    if not doc or "exc_type" not in doc:
        return None
    exc_type = doc["exc_type"]
    if doc.get("exc_module") not in (None, "builtins"):
        exc_type = f"{doc['exc_module']}.{exc_type}"
    message = str(doc.get("exc_message") or "").strip().splitlines()
    return f"{exc_type}: {message[0]}" if message else str(exc_type)


def results_of(state: AppState, task_ids: Sequence[str]) -> list[dict[str, Any] | None]:
    """The result documents of ``task_ids`` in order (None where there is none), in one
    read when the backend reads many at once."""
    backend = state.backend
    if backend is None or not task_ids:
        return [None] * len(task_ids)
    get_many = getattr(backend, "get_many", None)
    if get_many is not None:
        return list(get_many(task_ids))
    return [backend.get(task_id) for task_id in task_ids]


def recent_failures(state: AppState, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` tasks that failed without being dead-lettered, newest first
    (:meth:`Monitor.failures`), each with its current ``status``, its ``exception`` as one
    line and its ``traceback`` (from its result, when results are kept), its ``call``
    (arguments as text) and whether it can be retried (``retryable``: its message was
    kept)."""
    records = Monitor(state.store.monitor).failures(limit)
    docs = results_of(state, [r["id"] for r in records])
    rows = []
    for record, doc in zip(records, docs, strict=True):
        call = None
        if record.get("body") is not None:
            try:
                message = Message.from_bytes(record["body"], state.serializer)
            except DecodeError:
                pass
            else:
                call = call_preview(message.args, message.kwargs)
        rows.append(
            {
                **record,
                "status": (doc or {}).get("status"),
                "exception": exception_line(doc),
                "traceback": (doc or {}).get("traceback"),
                "call": call,
                "retryable": record.get("body") is not None,
            }
        )
    return rows
