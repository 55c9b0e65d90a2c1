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

import logging
from typing import Any

from blinker import Namespace

_signals = Namespace()

task_sent = _signals.signal("task-sent")
task_received = _signals.signal("task-received")
task_prerun = _signals.signal("task-prerun")
task_postrun = _signals.signal("task-postrun")
task_success = _signals.signal("task-success")
task_failure = _signals.signal("task-failure")
task_retry = _signals.signal("task-retry")
task_revoked = _signals.signal("task-revoked")
task_rejected = _signals.signal("task-rejected")
worker_ready = _signals.signal("worker-ready")
worker_shutdown = _signals.signal("worker-shutdown")
beat_tick = _signals.signal("beat-tick")


def send_safely(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` from inside the worker: a receiver that raises is logged, and
    never stops the worker or changes the task's outcome."""
    for receiver in list(signal.receivers_for(sender)):
        try:
            receiver(sender, **kwargs)
        except Exception:
            logging.getLogger("flask_taskq.worker").exception(
                "Receiver %r of signal %s raised", receiver, signal.name)
