"""Interrupting the task running on an executor thread: soft time limits and
``revoke(terminate=True)``.

On the main thread (solo pool, prefork children) a signal interrupts even a blocking call:
SIGALRM raises :class:`SoftTimeLimitExceeded`, SIGUSR1 raises :class:`TaskTerminated`. On
other threads (threads pool) the exception is raised asynchronously and takes effect when the
thread next runs Python code, so a blocking call finishes first.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from ..broker import Delivery
from ..exceptions import SoftTimeLimitExceeded
from ..message import Message


class TaskTerminated(BaseException):
    """Raised inside a task that ``revoke(terminate=True)`` stops."""


@dataclass(slots=True)
class Running:
    """A task running on one executor thread."""

    message: Message
    delivery: Delivery
    thread_id: int
    started: float
    soft_deadline: float | None
    hard_deadline: float | None
    interrupted: bool = False


class Guard:
    """Tracks what each executor thread runs and interrupts it when asked."""

    def __init__(self) -> None:
        self.running: dict[int, Running] = {}
        self._main = threading.main_thread().ident
        self._signals_ready = False
        self._alarm = False  # an itimer is armed for the main thread's task

    def install_signals(self) -> None:
        """Handle SIGALRM/SIGUSR1 (call on the main thread of a consuming process)."""
        signal.signal(signal.SIGALRM, self._raiser(SoftTimeLimitExceeded, "soft time limit"))
        signal.signal(signal.SIGUSR1, self._raiser(TaskTerminated, "terminated by revoke"))
        self._signals_ready = True

    def _raiser(
        self, exc_type: type[BaseException], text: str
    ) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._main in self.running:  # never outside a task
                raise exc_type(text)

        return handler

    def begin(
        self,
        message: Message,
        delivery: Delivery,
        soft_limit: float | None,
        hard_limit: float | None,
    ) -> None:
        """Note that this thread starts ``message``."""
        now = time.monotonic()
        tid = threading.get_ident()
        if soft_limit or hard_limit:
            entry = Running(
                message,
                delivery,
                tid,
                now,
                now + soft_limit if soft_limit else None,
                now + hard_limit if hard_limit else None,
            )
            if soft_limit and tid == self._main and self._signals_ready:
                signal.setitimer(signal.ITIMER_REAL, soft_limit)
                self._alarm = True
        else:
            entry = Running(message, delivery, tid, now, None, None)
        self.running[tid] = entry  # one dict store: atomic under the GIL

    def end(self) -> None:
        """Note that this thread's task finished."""
        if self._alarm and threading.get_ident() == self._main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._alarm = False
        self.running.pop(threading.get_ident(), None)

    def snapshot(self) -> list[Running]:
        return list(self.running.values())

    def interrupt(self, entry: Running, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the thread running ``entry`` (once)."""
        if entry.interrupted:
            return
        entry.interrupted = True
        if entry.thread_id == self._main and self._signals_ready:
            signum = signal.SIGUSR1 if exc_type is TaskTerminated else signal.SIGALRM
            signal.pthread_kill(entry.thread_id, signum)
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(entry.thread_id), ctypes.py_object(exc_type)
            )

    def uses_signals(self, entry: Running) -> bool:
        """True if ``entry``'s soft limit is an itimer signal (main thread)."""
        return entry.thread_id == self._main and self._signals_ready

    def next_deadline(self, hard: bool) -> float | None:
        """The earliest deadline the keeper must act on: soft limits not handled by a
        signal and, when ``hard``, hard limits; None if there is none."""
        times = []
        for e in self.snapshot():
            if e.interrupted:
                continue
            if e.soft_deadline is not None and not self.uses_signals(e):
                times.append(e.soft_deadline)
            if hard and e.hard_deadline is not None:
                times.append(e.hard_deadline)
        return min(times) if times else None
