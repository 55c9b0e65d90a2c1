"""Signals (blinker) sent by flask-taskq. Connect with ``signal.connect(receiver)``.

Arguments (all keyword) per signal:

- ``task_sent(task, task_id, message)``: after a message was enqueued (sending process);
  sender is the task, or its name when sent by name for a task not registered here.
- ``task_prerun(task, task_id, args, kwargs)``: in the worker, inside the app context,
  before the task function runs; sender is the task.
- ``task_postrun(task, task_id, args, kwargs, retval, state)``: after it ran, still inside
  the app context.
- ``task_success(task, task_id, result)``: after it returned.
- ``task_failure(task, task_id, exception, args, kwargs, traceback)``: after it raised.
- ``task_received(task, task_id, message, delivery_count)``: in the worker, when a message
  is taken from the local buffer to run; sender is the task (or its name if unknown).
- ``task_retry(task, task_id, reason, request, eta)``: a retry was scheduled.
- ``task_revoked(task, task_id, reason, expired, terminated)``: a revoked or expired
  task was not run, or a running one was terminated.
- ``task_rejected(task_id, reason, queue)``: a message went to the dead-letter store;
  sender is the task name (``"?"`` when undecodable).
- ``worker_ready(worker)`` / ``worker_shutdown(worker)``: in every worker process that
  consumes (the prefork supervisor does not); sender is the worker.
- ``beat_tick(beat)``: reserved for beat.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal


class TaskqSignal(NamedSignal):
    """A blinker signal that calls its receivers the way Celery does: ``sender`` as a
    keyword argument, with the other arguments. A receiver that can only take the sender
    positionally (blinker's ``def receiver(app, **extra)``) gets it positionally."""

    def send(
        self,
        sender: Any | None = None,
        /,
        *,
        _async_wrapper: Any = None,
        **kwargs: Any,
    ) -> list[tuple[Callable[..., Any], Any]]:
        """Call every receiver of ``sender``; exceptions propagate (see
        :func:`send_safely` for the worker's way)."""
        if self.is_muted:
            return []
        return [
            (receiver, call_receiver(receiver, self, sender, kwargs))
            for receiver in self.receivers_for(sender)
        ]


task_sent = TaskqSignal("task-sent")
task_received = TaskqSignal("task-received")
task_prerun = TaskqSignal("task-prerun")
task_postrun = TaskqSignal("task-postrun")
task_success = TaskqSignal("task-success")
task_failure = TaskqSignal("task-failure")
task_retry = TaskqSignal("task-retry")
task_revoked = TaskqSignal("task-revoked")
task_rejected = TaskqSignal("task-rejected")
worker_ready = TaskqSignal("worker-ready")
worker_shutdown = TaskqSignal("worker-shutdown")
beat_tick = TaskqSignal("beat-tick")

#: Per receiver function and signal: True when it takes ``sender`` as a keyword.
_by_keyword: weakref.WeakKeyDictionary[Any, dict[str, bool]] = weakref.WeakKeyDictionary()


def call_receiver(
    receiver: Callable[..., Any], signal: NamedSignal, sender: Any, kwargs: dict[str, Any]
) -> Any:
    """Call ``receiver`` as Celery does, ``receiver(sender=sender, **kwargs)``; a receiver
    whose signature needs the sender positionally (a first parameter with another name
    than ``sender``) gets ``receiver(sender, **kwargs)``. Decided once per receiver and
    signal."""
    key = getattr(receiver, "__func__", receiver)
    try:
        modes = _by_keyword.setdefault(key, {})
    except TypeError:  # not weakly referenceable: decide every time
        modes = {}
    by_keyword = modes.get(signal.name)
    if by_keyword is None:
        by_keyword = modes[signal.name] = _takes_sender_keyword(receiver, kwargs)
    if by_keyword:
        return receiver(sender=sender, **kwargs)
    return receiver(sender, **kwargs)


def _takes_sender_keyword(receiver: Callable[..., Any], kwargs: dict[str, Any]) -> bool:
    try:
        signature = inspect.signature(receiver)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(sender=None, **kwargs)
        return True
    except TypeError:
        pass
    try:
        signature.bind(None, **kwargs)
        return False
    except TypeError:
        return True  # neither fits: call it as Celery would, and let send_safely log it


def receiver_name(receiver: Any) -> str:
    """``module.qualname`` of a receiver, for logs."""
    func = getattr(receiver, "__func__", receiver)
    name = getattr(func, "__qualname__", None) or repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def send_safely(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` from inside the worker: a receiver that raises is logged with its
    name, and never stops the worker or changes the task's outcome."""
    for receiver in list(signal.receivers_for(sender)):
        try:
            call_receiver(receiver, signal, sender, kwargs)
        except Exception:
            logging.getLogger("flask_taskq.worker").exception(
                "Receiver %s of signal %s raised", receiver_name(receiver), signal.name
            )
