"""One AMQP connection, owned by one I/O thread.

pika's :class:`~pika.BlockingConnection` is not thread-safe: only the thread that owns it
may touch it, except :meth:`~pika.BlockingConnection.add_callback_threadsafe`. A
:class:`Link` therefore keeps a thread that owns the connection and its channel, services
them continuously (heartbeats and deliveries flow while tasks run on other threads), and
runs the work other threads hand it with :meth:`Link.call`, waking up through
``add_callback_threadsafe``. When the connection or channel is lost it reconnects by
itself, with backoff, and starts a new *generation*: deliveries of an older one can no
longer be acknowledged (RabbitMQ has requeued them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pika
import pika.exceptions

from .errors import AMQPConnectionError

logger = logging.getLogger("flask_taskq.worker")
# pika logs every connection step at INFO; a worker's ``-l info`` should not show them.
if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.WARNING)

T = TypeVar("T")

#: pika errors that mean the connection or channel is gone: reconnect.
LOST = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelClosed,
    pika.exceptions.ChannelWrongStateError,
    OSError,
)
#: pika errors of one publish: RabbitMQ returned or refused it (the channel stays).
REFUSED = (pika.exceptions.UnroutableError, pika.exceptions.NackError)
#: Longest wait between two connection attempts (seconds).
MAX_BACKOFF = 5.0


class _Job(Generic[T]):
    """A piece of work for the I/O thread and its outcome."""

    __slots__ = ("cancelled", "done", "error", "fn", "result", "started")

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.started = False
        self.cancelled = False


class Link:
    """A self-healing AMQP connection with one channel in confirm mode.

    ``on_open(channel)`` runs in the I/O thread after every (re)connection (to declare
    consumers again); ``on_lost()`` after every loss, before the next attempt.
    """

    def __init__(
        self,
        parameters: pika.URLParameters,
        on_open: Callable[[Any], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.parameters = parameters
        self.on_open = on_open
        self.on_lost = on_lost
        #: Longest a caller waits for the I/O thread to answer (seconds).
        self.reply_timeout = 30.0
        #: Increases with every new connection; 0 before the first.
        self.generation = 0
        self.pid = os.getpid()
        self._jobs: deque[_Job[Any]] = deque()
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._conn: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._down_since: float | None = None
        self._last_error = "not connected yet"

    # -- callers' side ------------------------------------------------------------------
    def call(self, fn: Callable[[Any], T], timeout: float | None = None) -> T:
        """Run ``fn(channel)`` in the I/O thread and return what it returned; raise
        :class:`AMQPConnectionError` when RabbitMQ cannot be reached or does not answer
        within ``timeout`` (default :attr:`reply_timeout`) seconds."""
        if threading.current_thread() is self._thread:
            if self._channel is None:
                raise AMQPConnectionError(f"RabbitMQ unreachable: {self._last_error}")
            return fn(self._channel)
        job: _Job[T] = _Job(fn)
        with self._lock:
            if self._closing:
                raise AMQPConnectionError("the AMQP connection is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskq-amqp", daemon=True)
                self._thread.start()
            self._jobs.append(job)
        self._wake()
        if not job.done.wait(self.reply_timeout if timeout is None else timeout):
            with self._lock:
                job.cancelled = True
                started = job.started
            if not job.done.is_set():
                raise AMQPConnectionError(
                    f"RabbitMQ did not answer within {timeout or self.reply_timeout}s",
                    maybe_sent=started,
                )
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    @property
    def in_io_thread(self) -> bool:
        """True when called from the I/O thread (inside a job or a delivery callback)."""
        return threading.current_thread() is self._thread

    def _wake(self) -> None:
        self._wakeup.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.add_callback_threadsafe(_nothing)
            except Exception:  # closed meanwhile: the loop notices by itself
                pass

    def close(self) -> None:
        """Close the connection (unacknowledged deliveries go back to their queues) and
        end the I/O thread."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    # -- the I/O thread -----------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            if self._conn is None:
                try:
                    self._connect()
                    backoff = 0.1
                except Exception as exc:
                    self._note_down(exc)
                    self._fail_jobs()
                    self._wakeup.wait(backoff)
                    self._wakeup.clear()
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
            self._run_jobs()
            conn = self._conn
            if conn is None or self._closing:
                continue
            try:
                conn.process_data_events(time_limit=0 if self._jobs else 1.0)
            except LOST as exc:
                self._drop(exc)
            except Exception:  # a bug in a callback must not end the thread
                logger.exception("Unexpected error in the AMQP connection thread")
        self._fail_jobs()
        self._drop(None)

    def _connect(self) -> None:
        conn = pika.BlockingConnection(self.parameters)
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            self._conn, self._channel = conn, channel
            self.generation += 1
            if self.on_open is not None:
                self.on_open(channel)
        except BaseException:
            self._conn = self._channel = None
            _close_quietly(conn)
            raise
        if self._down_since is not None:
            if self.generation > 1:  # the end of an outage _note_down logged
                logger.warning(
                    "RabbitMQ answers again: connected after %.1fs",
                    time.monotonic() - self._down_since,
                )
            self._down_since = None

    def _note_down(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._down_since is None:
            self._down_since = time.monotonic()
            if self.generation:  # an outage; a first connection that fails is the caller's error
                logger.warning(
                    "RabbitMQ unreachable (%s); reconnecting with backoff", self._last_error
                )

    def _drop(self, exc: BaseException | None) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is None:
            return
        if exc is not None:
            self._note_down(exc)
        _close_quietly(conn)
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:
                logger.exception("Error while forgetting a lost AMQP connection")

    def _fail_jobs(self) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, deque()
        for job in jobs:
            job.error = AMQPConnectionError(f"RabbitMQ unreachable: {self._last_error}")
            job.done.set()

    def _run_jobs(self) -> None:
        while self._conn is not None:
            with self._lock:
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                if job.cancelled:
                    continue
                job.started = True
            try:
                job.result = job.fn(self._channel)
            except REFUSED as exc:
                job.error = AMQPConnectionError(f"RabbitMQ refused the message ({exc!r})")
            except LOST as exc:
                job.error = AMQPConnectionError(
                    f"lost the connection to RabbitMQ ({type(exc).__name__}: {exc})",
                    maybe_sent=True,
                )
                self._drop(exc)
            except BaseException as exc:
                job.error = exc
            job.done.set()
        self._fail_jobs()


def _nothing() -> None:
    """Wakes the I/O thread (the jobs run after it returns)."""


def _close_quietly(conn: Any) -> None:
    try:
        if conn.is_open:
            conn.close()
    except Exception:
        pass
