"""``async def`` tasks: each consuming process runs their coroutines on one event loop of
its own (a daemon thread, made once and reused), many at once.

An executor thread puts an async task's message through the pipeline's ``before`` hooks
as for any task, in a contextvars context of its own (:meth:`AsyncPool.process`), so the
app context and ``self.request`` they set are that message's. The ``execute`` step
(:meth:`AsyncPool.execute`) then hands the coroutine to the loop, in a copy of that
context (``current_app`` works in it), and returns: the executor thread takes the next
message. When the coroutine ends, the settler thread classifies its outcome and runs the
``finish`` and ``after`` hooks (:meth:`~.hooks.base.Pipeline.resume`) back in the
message's context: the loop never waits for Redis (acks and results go out in the
consumer's batches, from the settler). At most ``--async-concurrency`` coroutines are in
flight per process; an executor thread with another async message waits for a free slot.

Interruptions come from the consumer's keeper thread (:mod:`.guard`): a soft time limit
raises :class:`~flask_taskq.exceptions.SoftTimeLimitExceeded` inside the coroutine where
it awaits; a hard limit or ``revoke(terminate=True)`` cancels it (``CancelledError``
where it awaits), and its outcome is then a :class:`TimeLimitExceeded` failure or
REVOKED. Eager mode runs a coroutine to completion on a loop thread of its own
(:func:`run_coroutine`), so it works from inside an ``async`` Flask view too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from .guard import Guard, TaskTerminated

if TYPE_CHECKING:
    from ..state import AppState
    from .consumer import Consumer
    from .execute import Executor, Outcome
    from .hooks.base import Context, Pipeline

logger = logging.getLogger("flask_taskq.worker")


def coroutine_key(ctx: Context) -> int:
    """The key an async task's run is noted under in the guard (negative: never a thread
    id)."""
    return -id(ctx)


class LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop (from any thread)."""
        self.loop.call_soon_threadsafe(fn, *args)

    @property
    def is_current(self) -> bool:
        """Whether the calling thread is this loop's."""
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> Any:
        """Run ``coro`` in ``context`` on the loop and wait for its value (or exception)."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def launch() -> None:
            # the task runs in a copy of the context it is made in (``context=`` is 3.11+)
            task = context.run(self.loop.create_task, coro)
            task.add_done_callback(lambda t: _pass_on(t, done))

        self.call(launch)
        return done.result()

    def stop(self) -> None:
        """Stop the loop and wait for its thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def _pass_on(task: asyncio.Task[Any], done: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        done.set_exception(asyncio.CancelledError())
        return
    exc = task.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())


_eager: LoopThread | None = None
_eager_lock = threading.Lock()


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion in (a copy of) the caller's contextvars context and
    return its value: eager mode's way to run an ``async def`` task. It runs on a loop
    thread made once per process, so it works whether or not the caller is itself inside
    a running event loop (an ``async`` view); called from a coroutine on that very loop
    (an async task that runs another eagerly), on a loop thread made for the call."""
    global _eager
    with _eager_lock:
        if _eager is None:
            _eager = LoopThread("taskq-aio-eager")
        loop = _eager
    context = contextvars.copy_context()
    if not loop.is_current:
        return loop.run(coro, context)
    nested = LoopThread("taskq-aio-nested")
    try:
        return nested.run(coro, context)
    finally:
        nested.stop()


class Job:
    """One async task in flight: what the settler needs, and the handle the keeper
    interrupts it with (:class:`~.guard.Stoppable`)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, ctx: Context, origin: contextvars.Context
    ) -> None:
        self.loop = loop
        self.ctx = ctx
        #: The context the ``before`` hooks ran in: the ``finish`` hooks run in it too.
        self.origin = origin
        self.task: asyncio.Task[Any] | None = None
        #: Why it was cancelled (TaskTerminated, TimeLimitExceeded), if it was.
        self.stopped: type[BaseException] | None = None
        #: A soft limit is to be raised inside the coroutine at its next resumption.
        self.soft = False
        #: How the coroutine ended: (run time, exception or None, value).
        self.ended: tuple[float, BaseException | None, Any] = (0.0, None, None)
        #: Settled once both the executor thread has left :attr:`origin` and the
        #: coroutine has ended (a context cannot be entered twice at once).
        self.waiting = 2

    def interrupt(self, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the coroutine (soft limit) or cancel it (thread-safe)."""
        self.loop.call_soon_threadsafe(self._interrupt, exc_type)

    def _interrupt(self, exc_type: type[BaseException]) -> None:
        task = self.task
        if task is None or task.done():
            return
        if exc_type is SoftTimeLimitExceeded:
            self.soft = True
        else:
            self.stopped = exc_type
            self.soft = False
        task.cancel()


class _Driven:
    """Awaits a coroutine step by step, so that a cancellation meant as a soft time limit
    reaches it as :class:`SoftTimeLimitExceeded` (which it may catch and go on from)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], job: Job) -> None:
        self.coro = coro
        self.job = job

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, job = self.coro, self.job
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = yield yielded
            except asyncio.CancelledError as exc:
                error = exc
                if job.soft and job.stopped is None:
                    job.soft = False
                    uncancel = getattr(asyncio.current_task(), "uncancel", None)
                    if uncancel is not None:  # 3.11+: not a cancellation after all
                        uncancel()
                    error = SoftTimeLimitExceeded("soft time limit exceeded")
            except BaseException as exc:  # thrown in by the loop: pass it on
                error = exc


class AsyncPool:
    """Runs the ``async def`` tasks of one consuming process on its event loop."""

    def __init__(
        self,
        pipeline: Pipeline,
        executor: Executor,
        guard: Guard,
        limit: int,
        fault: Callable[[Context, Exception], None],
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.guard = guard
        #: How many coroutines may be in flight at once (``--async-concurrency``).
        self.limit = max(1, limit)
        self.fault = fault
        self.loop = LoopThread("taskq-aio")
        self._slots = threading.Semaphore(self.limit)
        self._idle = threading.Condition()
        #: Coroutines started and not yet settled.
        self.in_flight = 0
        self._ended: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        #: .origin, .job: the context of the message in process(), the job it started
        self._local = threading.local()
        self._settler = threading.Thread(target=self._settle, name="taskq-aio-settler", daemon=True)
        self._settler.start()

    def more_coming(self) -> bool:
        """Whether the settler (when it is the caller) has more coroutines to settle now."""
        return threading.current_thread() is self._settler and not self._ended.empty()

    def room(self) -> int:
        """How many more coroutines could start now."""
        return max(0, self.limit - self.in_flight)

    # -- executor threads ------------------------------------------------------------------
    def process(self, ctx: Context) -> bool:
        """Put an async task's message through the pipeline in a context of its own
        (what :meth:`~.hooks.base.Pipeline.process` returns)."""
        local = self._local
        local.origin = origin = contextvars.copy_context()
        local.job = None
        try:
            return origin.run(self.pipeline.process, ctx)
        finally:
            job, local.origin, local.job = local.job, None, None
            if job is not None:
                self._ready(job)

    def execute(self, ctx: Context) -> Outcome | None:
        """The pipeline's ``execute`` step: a sync task runs here; an async one is handed
        to the loop (None: the settler resumes the pipeline when it ends)."""
        task = ctx.task
        origin: contextvars.Context | None = getattr(self._local, "origin", None)
        if task is None or not task.is_async or origin is None:
            return self.executor.execute(ctx)
        message = ctx.message
        self._slots.acquire()
        with self._idle:
            self.in_flight += 1
        start = time.perf_counter()
        try:
            coro = task.run(*message.args, **message.kwargs)  # bound when bind=True
        except Exception as exc:  # e.g. a TypeError for wrong arguments
            self._done()
            return self.executor.conclude(ctx, time.perf_counter() - start, exc, None)
        job = Job(self.loop.loop, ctx, origin)
        self._local.job = job
        self.loop.call(self._launch, job, coro, contextvars.copy_context(), start)
        self.guard.attach(coroutine_key(ctx), job)
        return None

    def _ready(self, job: Job) -> None:
        """One of the two ends of a job is done (see :attr:`Job.waiting`); the second
        hands it to the settler."""
        with self._idle:
            job.waiting -= 1
            last = not job.waiting
        if last:
            self._ended.put(job)

    # -- the loop thread -------------------------------------------------------------------
    def _launch(
        self,
        job: Job,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context,
        start: float,
    ) -> None:
        job.task = context.run(self.loop.loop.create_task, self._run(job, coro, start))

    async def _run(self, job: Job, coro: Coroutine[Any, Any, Any], start: float) -> None:
        error: BaseException | None = None
        retval: Any = None
        try:
            retval = await _Driven(coro, job)
        except asyncio.CancelledError as exc:
            error = exc
            if job.stopped is TaskTerminated:
                error = TaskTerminated("terminated by revoke")
            elif job.stopped is TimeLimitExceeded:
                limit = job.ctx.options.get("time_limit")
                error = TimeLimitExceeded(
                    f"task ran past its time_limit of {limit}s and was cancelled"
                )
        except BaseException as exc:  # the task's failure, whatever it raised
            error = exc
        job.ended = (time.perf_counter() - start, error, retval)
        self._ready(job)

    # -- the settler thread ----------------------------------------------------------------
    def _settle(self) -> None:
        while True:
            job = self._ended.get()
            if job is None:
                return
            ctx = job.ctx
            runtime, error, retval = job.ended
            conclude = functools.partial(
                self.executor.conclude, runtime=runtime, error=error, retval=retval
            )
            try:
                job.origin.run(self.pipeline.resume, ctx, conclude)
            except Exception as exc:
                self.fault(ctx, exc)
            except BaseException:  # never lose the settler thread
                logger.exception("Unexpected error while settling task %s", ctx.message.id)
            finally:
                self._done()

    def _done(self) -> None:
        self._slots.release()
        with self._idle:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.notify_all()

    # -- stopping --------------------------------------------------------------------------
    def drain(self) -> None:
        """Wait until every coroutine in flight has ended and been settled (the worker's
        shutdown timeout bounds how long a graceful stop waits)."""
        with self._idle:
            if self.in_flight:
                logger.info("Waiting for %d async task(s) to finish", self.in_flight)
            while self.in_flight:
                self._idle.wait()

    def close(self) -> None:
        """Stop the settler and the loop (after :meth:`drain`)."""
        self._ended.put(None)
        self._settler.join()
        self.loop.stop()


def async_pool(
    state: AppState,
    consumer: Consumer,
    pipeline: Pipeline,
    executor: Executor,
    limit: int,
    fault: Callable[[Context, Exception], None],
) -> AsyncPool | None:
    """The async pool of a consuming process, wired into its pipeline and consumer; None
    when the app has no ``async def`` task (nothing is started then)."""
    if not any(task.is_async for task in state.taskqueue.tasks.values()):
        return None
    pool = AsyncPool(pipeline, executor, consumer.guard, limit, fault)
    pipeline.execute = pool.execute
    consumer.async_room = pool.room
    consumer.more_coming = pool.more_coming
    return pool
