"""Interrupting the task running on an executor thread: soft time limits and
``revoke(terminate=True)``.

On the main thread (solo pool, prefork children) a signal interrupts even a blocking call:
SIGALRM raises :class:`SoftTimeLimitExceeded`, SIGUSR1 raises :class:`TaskTerminated`. On
other threads (threads pool) the exception is raised asynchronously and takes effect when the
thread next runs Python code, so a blocking call finishes first.

An ``async def`` task runs on the process's event loop (:mod:`.aio`), not on a thread of its
own: it is noted under a key of its own (negative, never a thread id) with a
:class:`Stoppable` handle, and interrupting it goes through the loop (the soft limit raises
inside the coroutine; a hard limit or a termination cancels it), in every pool.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from ..broker import Delivery
from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from ..message import Message


class TaskTerminated(BaseException):
    """Raised inside a task that ``revoke(terminate=True)`` stops."""


class Stoppable(Protocol):
    """What interrupts a coroutine running on the event loop (thread-safe)."""

    def interrupt(self, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in it (soft limit) or cancel it (hard limit, terminate)."""


@dataclass(slots=True)
class Running:
    """A task running on one executor thread (or, with :attr:`handle`, on the loop)."""

    message: Message
    delivery: Delivery
    thread_id: int
    started: float
    soft_deadline: float | None
    hard_deadline: float | None
    interrupted: bool = False
    #: An ``async def`` task's handle (:attr:`thread_id` is then its negative key).
    handle: Stoppable | None = None


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
        key: int | None = None,
    ) -> None:
        """Note that this thread starts ``message`` (with ``key``, a negative number: that a
        coroutine starts it, see :meth:`attach`)."""
        now = time.monotonic()
        tid = threading.get_ident() if key is None else key
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

    def end(self, key: int | None = None) -> None:
        """Note that this thread's task (with ``key``: that coroutine) finished."""
        if key is not None:
            self.running.pop(key, None)
            return
        if self._alarm and threading.get_ident() == self._main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._alarm = False
        self.running.pop(threading.get_ident(), None)

    def attach(self, key: int, handle: Stoppable) -> None:
        """Give the coroutine noted under ``key`` the handle that interrupts it."""
        entry = self.running.get(key)
        if entry is not None:
            entry.handle = handle

    def threads_busy(self) -> int:
        """How many executor threads run a task (coroutines left out)."""
        return sum(1 for key in list(self.running) if key >= 0)

    def police_coroutine(self, entry: Running, now: float, terminate: bool) -> None:
        """Interrupt a coroutine that is revoked with terminate (cancelled) or past its
        hard (cancelled) or soft limit (SoftTimeLimitExceeded raised inside it)."""
        handle = entry.handle
        if handle is None or entry.interrupted:
            return
        if terminate:
            entry.interrupted = True
            handle.interrupt(TaskTerminated)
        elif entry.hard_deadline is not None and now >= entry.hard_deadline:
            entry.interrupted = True
            handle.interrupt(TimeLimitExceeded)
        elif entry.soft_deadline is not None and now >= entry.soft_deadline:
            entry.soft_deadline = None  # once; the hard limit still applies
            handle.interrupt(SoftTimeLimitExceeded)

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
            if e.thread_id < 0:  # a coroutine: both limits are the keeper's, in every pool
                if e.handle is not None:
                    times += [t for t in (e.soft_deadline, e.hard_deadline) if t is not None]
                continue
            if e.soft_deadline is not None and not self.uses_signals(e):
                times.append(e.soft_deadline)
            if hard and e.hard_deadline is not None:
                times.append(e.hard_deadline)
        return min(times) if times else None
