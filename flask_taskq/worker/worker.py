"""``Worker``: runs a consumer and its executors in one of three pools.

- ``solo``: the main thread fetches and runs tasks.
- ``threads``: N threads share one consumer in one process.
- ``prefork``: a supervisor forks N children, each a ``solo`` worker with its own Redis
  connections (nothing crosses between processes on the hot path); a child that dies is
  replaced.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask

from .. import signals, states
from ..broker.blame import broker_server, server_of
from ..broker.memory import ANY_QUEUE
from ..events import flush_all as flush_events
from ..monitor import Monitor, rss_bytes
from ..result import exception_meta
from ..task import current_request
from .aio import AsyncPool, async_pool
from .consumer import CONNECTION_ERRORS, REDIS_ERRORS, Consumer
from .execute import Executor
from .hooks import Context, Pipeline, worker_pipeline
from .queues import QueueSelection, is_glob, known_queues

if TYPE_CHECKING:
    import mmap

    from ..broker import Delivery
    from ..message import Message
    from ..state import AppState
    from .autoscale import Autoscaler

logger = logging.getLogger("flask_taskq.worker")

POOLS = ("prefork", "threads", "solo")

_NAME_FIELD = re.compile(r"%(.?)", re.DOTALL)


def expand_name(template: str, index: int = 0, hostname: str | None = None) -> str:
    """Expand a worker name template as Celery does: ``%h`` the full host name, ``%n`` its
    name part (before the first dot), ``%d`` its domain part, ``%i`` the prefork child's
    index (1 to N; 0 in the main process), ``%I`` ``-<index>`` in a child and empty in the
    main process, ``%%`` a percent sign. ``ValueError`` for any other ``%`` field."""
    host = hostname or socket.gethostname()
    name, _, domain = host.partition(".")
    fields = {"h": host, "n": name, "d": domain, **_index_fields(index)}
    return _expand(template, fields, "worker name", "%h, %n, %d, %i, %I or %%")


def expand_logfile(
    template: str, name_template: str | None = None, index: int = 0, hostname: str | None = None
) -> str:
    """Expand a ``--logfile`` template as Celery does: the fields of :func:`expand_name`,
    except that when the worker name (``-n``, expanded) is ``name@host``, ``%n`` is
    ``name`` and ``%h``/``%d`` are ``host`` and its domain; ``%p`` is the whole worker
    name (the host name without ``-n``). ``%i``/``%I`` are the prefork child's index, so
    ``%n%I.log`` gives each child its own file."""
    host = hostname or socket.gethostname()
    node = expand_name(name_template, 0, host) if name_template else host
    nodename, at, nodehost = node.partition("@")
    if not at:
        nodename, nodehost = host.partition(".")[0], host
    fields = {
        "h": nodehost,
        "n": nodename,
        "d": nodehost.partition(".")[2],
        "p": node,
        **_index_fields(index),
    }
    return _expand(template, fields, "log file", "%h, %n, %d, %p, %i, %I or %%")


def _index_fields(index: int) -> dict[str, str]:
    return {"i": str(index), "I": f"-{index}" if index else "", "%": "%"}


def _expand(template: str, fields: dict[str, str], what: str, allowed: str) -> str:
    def field(match: re.Match[str]) -> str:
        try:
            return fields[match.group(1)]
        except KeyError:
            found = f"unknown field %{match.group(1)}" if match.group(1) else "a lone %"
            raise ValueError(
                f"{found} in {what} {template!r}; use {allowed} (a percent sign)"
            ) from None

    return _NAME_FIELD.sub(field, template)


def consumer_name(
    worker_name: str, slot: int | None = None, pid: int | None = None, token: str | None = None
) -> str:
    """The Redis consumer name of a process (this one unless ``pid``): the worker's
    (expanded) name, then for a prefork child its slot, then the pid and a random
    ``token``, so that it is unique per process even when workers share a name (``-n``)
    or a pid (other hosts, containers)."""
    where = f"{slot}-" if slot is not None else ""
    return f"{worker_name}/{where}{pid or os.getpid()}-{token or secrets.token_hex(3)}"


class TaskLogFilter(logging.Filter):
    """Adds ``%(task)s`` (`` name[id]`` of the running task, or empty) to log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        record.task = f" {request.task}[{request.id}]" if request else ""
        return True


def setup_logging(level: str | int = "WARNING", logfile: str | None = None) -> None:
    """Log to stderr, or append to ``logfile``, with process id and the running task's
    name and id. ``OSError`` when ``logfile`` cannot be opened. A log file moved away
    (logrotate) is reopened at its path."""
    handler: logging.Handler
    if logfile:
        from logging.handlers import WatchedFileHandler

        handler = WatchedFileHandler(logfile, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TaskLogFilter())
    handler.setFormatter(
        logging.Formatter("[%(asctime)s: %(levelname)s/%(process)d]%(task)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)


def default_queues(state: AppState) -> list[str]:
    """The default queue plus every queue named in routes or task options."""
    queues = [state.default_queue]
    named: list[str | None] = list(state.router.queues())
    named += [t.options_for(state).get("queue") for t in state.taskqueue.tasks.values()]
    for q in named:
        if q and q not in queues:
            queues.append(q)
    return queues


class Worker:
    """A worker for ``app``; ``run()`` blocks until it is stopped and returns an exit code."""

    def __init__(
        self,
        app: Flask,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        name: str | None = None,
        prefetch: int | None = None,
        max_tasks_per_child: int | None = None,
        shutdown_timeout: float | None = None,
        install_signals: bool = True,
        state: AppState | None = None,
        autoscale: tuple[int, int] | None = None,
        max_memory_per_child: int | None = None,
        logfile: str | None = None,
        async_concurrency: int | None = None,
    ) -> None:
        self.app = app
        self.state: AppState = state or app.extensions["taskq"]
        config = self.state.config
        self.pool = pool or config["TASKQ_WORKER_POOL"]
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; choose one of {', '.join(POOLS)}")
        self.concurrency = (
            1
            if self.pool == "solo"
            else int(concurrency or config["TASKQ_WORKER_CONCURRENCY"] or os.cpu_count() or 1)
        )
        #: ``-Q`` when it has globs: each consuming process rechecks them
        #: (:meth:`_watch_queues`), so it picks up queues that become known later.
        self.selection: QueueSelection | None = None
        if queues and list(queues) == [ANY_QUEUE] and self.state.is_memory:
            # memory://'s in-process worker: every queue at once, new ones included (a
            # glob would pick new queues up only at its next recheck); paused ones are
            # left out when fetching (Consumer._unpaused)
            self.queues = [ANY_QUEUE]
        elif queues and any(is_glob(q) for q in queues):
            self.selection = QueueSelection(queues)
            self.queues = self.selection.resolve(known_queues(self.state, self.state.broker))
            if not self.queues:
                raise ValueError(self.selection.describe_empty())
        else:
            self.queues = list(queues or default_queues(self.state))
        #: ``-n`` as given (``%h`` etc. unexpanded): prefork children expand ``%i`` in it.
        self.name_template = name or f"{os.getpid()}@%h"
        #: The worker's display name (heartbeats, ``inspect``, the dashboard); the Redis
        #: consumer name of each process adds what makes it unique (:func:`consumer_name`).
        self.name = expand_name(self.name_template)
        #: None: automatic (see ``Consumer``); the banner shows ``auto``.
        self.prefetch: int | None = prefetch or config["TASKQ_WORKER_PREFETCH"] or None
        #: Most ``async def`` tasks in flight at once per consuming process.
        self.async_concurrency = int(
            async_concurrency or config["TASKQ_WORKER_ASYNC_CONCURRENCY"] or 100
        )
        if self.async_concurrency < 1:
            raise ValueError("--async-concurrency must be at least 1")
        self.max_tasks_per_child = max_tasks_per_child or config["TASKQ_MAX_TASKS_PER_CHILD"]
        self.shutdown_timeout = float(
            shutdown_timeout
            if shutdown_timeout is not None
            else config["TASKQ_WORKER_SHUTDOWN_TIMEOUT"]
        )
        #: ``(max, min)`` children of an autoscaling prefork pool (``--autoscale``).
        self.autoscale = self._check_autoscale(autoscale)
        if self.autoscale is not None:
            self.concurrency = self.autoscale[0]
        #: Prefork: replace a child whose RSS exceeds this many KiB after a task.
        self.max_memory_per_child = max_memory_per_child
        if max_memory_per_child is not None and max_memory_per_child < 1:
            raise ValueError("--max-memory-per-child must be a positive number of KiB")
        if max_memory_per_child and self.pool != "prefork":
            logger.warning("--max-memory-per-child applies to the prefork pool only: ignored")
        #: ``--logfile`` as given: a prefork child reopens it when it has ``%i``/``%I``.
        self.logfile = logfile
        self.install_signals = install_signals
        self.consumer: Consumer | None = None
        #: The event loop of this process's ``async def`` tasks (None without any).
        self.aio: AsyncPool | None = None
        #: In a prefork child: the shared busy flags (one byte per slot) and its slot.
        self._busy: mmap.mmap | None = None
        self._slot = 0
        #: In a prefork child: ``max_memory_per_child`` in bytes.
        self._max_rss: int | None = None
        self._stopped = threading.Event()
        self._finished = threading.Event()
        #: Called (on a helper thread) when the first stop signal arrives, e.g. to stop
        #: an embedded beat at once rather than after the running tasks finish.
        self.on_stop: list[Callable[[], object]] = []

    def _check_autoscale(self, autoscale: tuple[int, int] | None) -> tuple[int, int] | None:
        if autoscale is None:
            return None
        most, least = autoscale
        if most < 1 or least < 0 or least > most:
            raise ValueError(
                f"--autoscale {most},{least}: give MAX,MIN with MAX >= 1 and 0 <= MIN <= MAX"
            )
        if self.pool != "prefork":
            logger.warning("--autoscale applies to the prefork pool only: ignored")
            return None
        return most, least

    def describe(self) -> str:
        """One line saying what this worker runs."""
        concurrency = (
            f"{self.autoscale[1]}..{self.autoscale[0]} (autoscale)"
            if self.autoscale
            else str(self.concurrency)
        )
        queues = ",".join(self.queues)
        if self.selection is not None:
            queues += f" (and new queues matching {','.join(self.selection.globs)})"
        coroutines = (
            f" async-concurrency={self.async_concurrency}"
            if any(t.is_async for t in self.state.taskqueue.tasks.values())
            else ""
        )
        return (
            f"taskq worker {self.name}: pool={self.pool} concurrency={concurrency} "
            f"queues={queues} prefetch={self.prefetch or 'auto'}{coroutines}"
        )

    def run(self) -> int:
        """Run until stopped; return the process exit code (0 after a graceful stop)."""
        if self.pool == "prefork":
            return Supervisor(self).run()
        threads = self.concurrency if self.pool == "threads" else 1
        return self.run_consumer(threads, consumer_name(self.name))

    def stop(self) -> None:
        """Stop gracefully (what SIGTERM does)."""
        self._stopped.set()
        if self.consumer is not None:
            self.consumer.stop()

    # -- one consuming process -------------------------------------------------------------
    def run_consumer(
        self, threads: int, consumer_name: str, max_tasks: int | None = None, child: bool = False
    ) -> int:
        """Consume in this process with ``threads`` executor threads (``child``: as a
        prefork child, which its supervisor stops)."""
        state = self.state
        broker = state.new_broker()
        consumer = Consumer(
            state, broker, state.new_backend(), consumer_name, self.queues, self.prefetch, threads
        )
        self.consumer = consumer
        consumer.identity = {
            "worker": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pool": self.pool,
            "concurrency": threads if self.pool != "prefork" else 1,
        }
        if self._stopped.is_set():
            return 0
        if child:
            self._install_child_signal_handlers(consumer)
            consumer.hard_limits = True
        elif self.install_signals:
            self._install_signal_handlers(consumer)
        if threading.current_thread() is threading.main_thread() and threads == 1:
            consumer.guard.install_signals()
        if not child:
            self._warn_about_hard_limits()
        self._ensure_groups(broker, consumer)
        executor = Executor(state, worker=self.name)
        pipeline = worker_pipeline(state, consumer, executor, self._busy, self._slot)
        self.aio = aio = async_pool(
            state, consumer, pipeline, executor, self.async_concurrency, self._aio_fault
        )
        consumer.start_keeper()
        if self.selection is not None:
            threading.Thread(
                target=self._watch_queues, args=(consumer, broker), name="taskq-queues", daemon=True
            ).start()
        signals.send_safely(signals.worker_ready, self)
        logger.info("%s ready", consumer_name)
        died: list[BaseException] = []
        if threads == 1:
            self._executor(consumer, pipeline, max_tasks, died)
        else:
            pool = [
                threading.Thread(
                    target=self._executor,
                    args=(consumer, pipeline, None, died),
                    name=f"taskq-executor-{i}",
                    daemon=True,
                )
                for i in range(threads)
            ]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        if aio is not None:
            aio.drain()
            aio.close()
        consumer.close()
        consumer.leave()
        self._finished.set()
        signals.send_safely(signals.worker_shutdown, self)
        return 1 if died else 0

    def _executor(
        self,
        consumer: Consumer,
        pipeline: Pipeline,
        max_tasks: int | None,
        died: list[BaseException],
    ) -> None:
        """One executor: :meth:`_loop` until stopped. If it ends by an exception anyway
        (``SystemExit`` from a task, a bug while settling a message), the whole worker
        stops: unstarted messages go back to the queue, the message it was running is
        left to its lease (taken over by another worker once it expires) and the process
        exits non-zero."""
        try:
            self._loop(consumer, pipeline, max_tasks)
        except BaseException as exc:
            died.append(exc)
            item = consumer.current()
            if item is not None and consumer.unsettled(item[0]):
                consumer.forget(item[0])
            logger.critical(
                "Executor thread %s died (%s: %s) handling message %s: stopping the worker",
                threading.current_thread().name,
                type(exc).__name__,
                exc,
                item[1].id if item else "-",
                exc_info=exc,
            )
            consumer.stop()

    def _ensure_groups(self, broker: Any, consumer: Consumer) -> None:
        ensure = getattr(broker, "ensure_groups", None)
        backoff = 0.1
        while ensure is not None and not consumer.stopping.is_set():
            try:
                ensure(self.queues)
                return
            except CONNECTION_ERRORS as exc:
                logger.warning(
                    "%s unreachable (%s); retrying in %.1fs",
                    server_of(exc, broker_server(broker)),
                    exc,
                    backoff,
                )
                consumer.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    #: Seconds between two looks for new queues matching the globs of ``-Q``.
    QUEUE_RECHECK = 5.0

    def recheck_queues(self, broker: Any) -> list[str]:
        """The queues the globs of ``-Q`` select now that :attr:`queues` lacks (consumer
        groups created); they are added to :attr:`queues`. Empty without globs."""
        if self.selection is None:
            return []
        found = self.selection.resolve(known_queues(self.state, broker))
        new = [q for q in found if q not in self.queues]
        if new:
            ensure = getattr(broker, "ensure_groups", None)
            if ensure is not None:
                ensure(new)
            self.queues = [*self.queues, *new]
        return new

    def _watch_queues(self, consumer: Consumer, broker: Any) -> None:
        """Every :attr:`QUEUE_RECHECK` seconds, start consuming the new queues that the
        globs of ``-Q`` match."""
        while not consumer.stopping.wait(self.QUEUE_RECHECK):
            try:
                new = self.recheck_queues(broker)
            except REDIS_ERRORS:
                continue  # Redis away: the next look tries again
            except Exception:
                logger.exception("Could not look for new queues matching -Q")
                continue
            if new:
                consumer.queues = list(self.queues)
                logger.info("Consuming new queue(s) matching -Q: %s", ", ".join(new))

    def _install_child_signal_handlers(self, consumer: Consumer) -> None:
        # Ctrl-C reaches the whole process group: the supervisor alone decides. SIGTERM
        # (from the supervisor, or from systemd to the whole group) always means "finish
        # and leave", however often it comes; the supervisor SIGKILLs when it must.
        def handle(signum: int, frame: object) -> None:
            if not consumer.stopping.is_set():
                threading.Thread(target=consumer.stop, daemon=True).start()

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, handle)

    def _warn_about_hard_limits(self) -> None:
        limited = sorted(
            t.name
            for t in self.state.taskqueue.tasks.values()
            if t.options_for(self.state).get("time_limit") and not t.is_async
        )
        if limited:
            logger.warning(
                "time_limit is enforced only by the prefork pool; in the %s pool "
                "only soft_time_limit applies (tasks: %s)",
                self.pool,
                ", ".join(limited),
            )

    def run_stop_hooks(self) -> None:
        """Call the :attr:`on_stop` callbacks once; errors are logged."""
        hooks, self.on_stop = self.on_stop, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                logger.exception("Stop hook %r failed", hook)

    def _stop_then_give_up(self, consumer: Consumer) -> None:
        self.run_stop_hooks()
        consumer.stop()
        if not self._finished.wait(self.shutdown_timeout):
            logger.error(
                "Running tasks did not finish within %.0fs: exiting now", self.shutdown_timeout
            )
            os._exit(1)

    def _loop(self, consumer: Consumer, pipeline: Pipeline, max_tasks: int | None) -> None:
        """Run messages until stopped (or ``max_tasks`` ran). An unexpected error while
        handling one message is logged with its id and the message is settled: handed
        back to the queue when Redis failed, dead-lettered with the reason otherwise; then
        the loop goes on."""
        while True:
            taken = consumer.taken
            try:
                self._consume(consumer, pipeline, max_tasks)
                return
            except Exception as exc:
                self._fault(consumer, exc)
            if consumer.taken == taken:  # it failed before taking a message: no spin
                consumer.stopping.wait(1.0)
            if max_tasks:
                max_tasks = max(1, max_tasks - (consumer.taken - taken))

    def _aio_fault(self, ctx: Context, exc: Exception) -> None:
        assert self.consumer is not None and ctx.delivery is not None
        self._fault(self.consumer, exc, (ctx.delivery, ctx.message))

    def _fault(
        self,
        consumer: Consumer,
        exc: Exception,
        item: tuple[Delivery, Message] | None = None,
    ) -> None:
        """Settle the message whose handling raised ``exc`` (see :meth:`_loop`); by
        default the one this thread took."""
        item = item or consumer.current()
        if item is None or not consumer.unsettled(item[0]):
            logger.error(
                "Unexpected error after message %s was settled",
                item[1].id if item else "-",
                exc_info=exc,
            )
            return
        delivery, message = item
        if isinstance(exc, REDIS_ERRORS):
            logger.warning(
                "Redis failed while handling message %s of task %s (%s: %s); "
                "handing it back to the queue",
                message.id,
                message.task,
                type(exc).__name__,
                exc,
            )
            try:
                consumer.requeue(delivery)
            except REDIS_ERRORS:  # closing: its lease hands it to another worker
                consumer.forget(delivery)
            return
        logger.error(
            "Unexpected error while handling message %s of task %s: dead-lettering it",
            message.id,
            message.task,
            exc_info=exc,
        )
        data = None
        task = consumer.tasks.get(message.task)
        try:
            if (
                task is not None
                and consumer.backend is not None
                and not task.options_for(self.state)["ignore_result"]
            ):
                data = consumer.serializer.dumps(
                    {
                        "status": states.FAILURE,
                        "task": message.task,
                        "date_done": time.time(),
                        **exception_meta(exc),
                    }
                )
        except Exception:
            data = None
        consumer.dead_letter(
            delivery,
            f"unexpected error while handling it: {type(exc).__name__}: {exc}",
            message.task,
            message.id,
            data,
            "".join(traceback.format_exception(exc)),
        )

    def _consume(self, consumer: Consumer, pipeline: Pipeline, max_tasks: int | None) -> None:
        """Take messages and put each through the pipeline (:mod:`.hooks`)."""
        done = 0
        state, tasks, max_rss = self.state, self.state.taskqueue.tasks, self._max_rss
        while True:
            item = consumer.next()
            if item is None:
                return
            delivery, message = item
            task = tasks.get(message.task)
            options = task.options_for(state) if task is not None else {}
            ctx = Context(message, delivery, task, options)
            aio = self.aio if task is not None and task.is_async else None
            if not (aio.process if aio is not None else pipeline.process)(ctx):
                continue  # settled before running, or left for a redelivery
            done += 1
            if max_tasks and done >= max_tasks:
                consumer.stop()
                return
            if max_rss and rss_bytes() > max_rss:
                logger.warning(
                    "Child uses %d KiB, more than --max-memory-per-child %d KiB: "
                    "replacing it after task %s",
                    rss_bytes() // 1024,
                    max_rss // 1024,
                    message.id,
                )
                consumer.stop()
                return

    def _install_signal_handlers(self, consumer: Consumer) -> None:
        signalled: list[int] = []

        def handle(signum: int, frame: object) -> None:
            if signalled or consumer.stopping.is_set():
                logger.warning("Second signal: exiting now")
                os._exit(1)
            signalled.append(signum)
            logger.warning("Stopping: running tasks may finish within %.0fs", self.shutdown_timeout)
            # Event.set() takes a lock the interrupted main thread may hold: use a thread.
            threading.Thread(target=self._stop_then_give_up, args=(consumer,), daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


class Supervisor:
    """The prefork pool: keeps ``concurrency`` child processes consuming, and renews the
    leases its live children hold (a child running C code that holds the GIL cannot)."""

    #: Seconds between two looks at the children (reaping, respawning, renewing).
    TICK = 0.2
    #: Seconds a slot waits for its new child when the old one died within a second.
    RESPAWN_DELAY = 1.0
    #: Socket timeout of the supervisor's own Redis connection: a frozen Redis delays the
    #: supervisor's loop by at most this much.
    SOCKET_TIMEOUT = 2.0

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.children: dict[int, int] = {}  # pid -> slot
        self.consumers: dict[int, str] = {}  # pid -> the child's consumer name
        self.parent_pid = os.getpid()
        self.started: dict[int, float] = {}
        #: slot -> when (monotonic) to start its new child; never slept on, so that a
        #: stop signal is acted on at once.
        self.respawn: dict[int, float] = {}
        self.stopping = False
        self.deadline: float | None = None
        self.broker: Any = None  # for lease renewal; its own connection, not the children's
        self.renew_interval = float(worker.state.config["TASKQ_VISIBILITY_TIMEOUT"]) / 3
        self._next_renew = 0.0
        self._renew_failing = False
        #: ``--autoscale``: the policy, one busy flag per slot that the children set
        #: while they run a task (shared memory), and the children asked to leave.
        self.autoscaler: Autoscaler | None = None
        if worker.autoscale:
            from .autoscale import Autoscaler

            self.autoscaler = Autoscaler(*worker.autoscale, time.monotonic())
        self.busy: mmap.mmap | None = None
        if self.autoscaler:
            import mmap

            self.busy = mmap.mmap(-1, worker.concurrency)
        self.retiring: set[int] = set()
        self._next_scale = 0.0
        self._next_queue_check = time.monotonic() + worker.QUEUE_RECHECK

    def run(self) -> int:
        """Fork the children and supervise them until they have all stopped; return the
        exit code (0 after a graceful stop)."""
        worker = self.worker
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.broker = self._new_broker()
        first = self.autoscaler.minimum if self.autoscaler else worker.concurrency
        for slot in range(first):
            self._spawn(slot)
        self._next_renew = time.monotonic() + self.renew_interval
        exit_code = 0
        try:
            while self.children or (not self.stopping and (self.respawn or self.autoscaler)):
                time.sleep(self.TICK)
                self._reap()
                self._respawn_due()
                self._renew_leases()
                self._recheck_queues()
                self._autoscale()
                if self.deadline is not None and time.monotonic() > self.deadline:
                    logger.error(
                        "Children did not finish within %.0fs: killing them",
                        worker.shutdown_timeout,
                    )
                    self._kill_all()
                    self.deadline = None
                    exit_code = 1
        finally:
            self._close_broker()
        return exit_code

    def _spawn(self, slot: int) -> None:
        if self.stopping:
            return
        token = secrets.token_hex(3)
        display = expand_name(self.worker.name_template, slot + 1)
        # Blocked across the fork: the child must not run the supervisor's handler, and
        # the supervisor must know the child before its handler runs.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:
            self._child(slot, display, token, mask)  # never returns
        try:
            self.children[pid] = slot
            self.consumers[pid] = consumer_name(display, slot, pid, token)
            self.started[pid] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if self.stopping:  # handled meanwhile (it reached another thread) without this child
            _signal(pid, signal.SIGTERM)

    def _child(self, slot: int, display: str, token: str, mask: set[int]) -> None:
        code = 1
        try:
            worker = self.worker
            worker.on_stop = []  # the supervisor's (e.g. an embedded beat's)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # Until the consumer installs its own handler, a SIGTERM stops it before it
            # starts (or as soon as it has started).
            signal.signal(
                signal.SIGTERM,
                lambda signum, frame: threading.Thread(target=worker.stop, daemon=True).start(),
            )
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self._forget_broker()
            _stop_with_parent(self.parent_pid)
            worker.name = display
            worker._busy, worker._slot = self.busy, slot
            if worker.max_memory_per_child:
                worker._max_rss = worker.max_memory_per_child * 1024
            self._own_logfile(slot)
            name = consumer_name(display, slot, os.getpid(), token)
            code = worker.run_consumer(1, name, worker.max_tasks_per_child, child=True)
        except BaseException:
            traceback.print_exc()
        finally:
            flush_events()  # os._exit skips atexit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                self.consumers.clear()
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            self.consumers.pop(pid, None)
            started = self.started.pop(pid, time.monotonic())
            if self.busy is not None and slot is not None:
                self.busy[slot] = 0
            if pid in self.retiring:
                self.retiring.discard(pid)
                continue
            if slot is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            quick_crash = code != 0 and time.monotonic() - started < 1.0
            delay = self.RESPAWN_DELAY if quick_crash else 0.0
            if code != 0:
                logger.error(
                    "Child %d (slot %d) exited with %s; starting a new one%s",
                    pid,
                    slot,
                    code,
                    f" in {delay:.0f}s" if delay else "",
                )
            self.respawn[slot] = time.monotonic() + delay

    def _respawn_due(self) -> None:
        if self.stopping:
            self.respawn.clear()
            return
        now = time.monotonic()
        for slot, due in sorted(self.respawn.items()):
            if due <= now:
                del self.respawn[slot]
                self._spawn(slot)

    # -- leases of the children ------------------------------------------------------------
    def _new_broker(self) -> Any:
        broker = self.worker.state.new_broker()
        if not hasattr(broker, "renew_consumers"):
            return None
        broker.set_reply_timeout(self.SOCKET_TIMEOUT)
        return broker

    def _forget_broker(self) -> None:
        """In a child: drop the supervisor's connections without touching their sockets."""
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.after_fork()

    def _close_broker(self) -> None:
        broker, self.broker = self.broker, None
        if broker is not None:
            try:
                broker.close()
            except Exception:
                pass

    def _renew_leases(self) -> None:
        """Every ``TASKQ_VISIBILITY_TIMEOUT / 3``, renew every lease held by a child that
        is alive and not stopped (SIGSTOP), whatever the child itself can do: a task
        holding the GIL blocks the child's keeper thread. A dead child's leases expire."""
        now = time.monotonic()
        if self.broker is None or now < self._next_renew:
            return
        self._next_renew = now + self.renew_interval
        names = [
            name
            for pid, name in self.consumers.items()
            if pid in self.children and not _is_stopped(pid)
        ]
        if not names:
            return
        try:
            self.broker.renew_consumers(names, self.worker.queues)
        except Exception as exc:  # Redis away or refusing: the supervisor goes on
            if not self._renew_failing:
                logger.warning(
                    "Supervisor could not renew its children's leases (%s); "
                    "they still renew their own",
                    exc,
                    exc_info=not isinstance(exc, self.broker.errors),
                )
            self._renew_failing = True
        else:
            if self._renew_failing:
                logger.warning("Supervisor renews its children's leases again")
            self._renew_failing = False

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            logger.warning("Second signal: killing children and exiting now")
            self._kill_all()
            os._exit(1)
        self.stopping = True
        threading.Thread(target=self.worker.run_stop_hooks, daemon=True).start()
        self.deadline = time.monotonic() + self.worker.shutdown_timeout
        logger.warning(
            "Stopping: running tasks may finish within %.0fs", self.worker.shutdown_timeout
        )
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        for pid in list(self.children):
            _signal(pid, signal.SIGKILL)

    # -- --logfile, -Q globs and --autoscale -------------------------------------------------
    def _own_logfile(self, slot: int) -> None:
        """In a child: log to its own file when ``--logfile`` has ``%i`` or ``%I``."""
        worker = self.worker
        if not worker.logfile or not ("%i" in worker.logfile or "%I" in worker.logfile):
            return
        path = expand_logfile(worker.logfile, worker.name_template, slot + 1)
        try:
            setup_logging(logging.getLogger().level, path)
        except OSError as exc:
            logger.error("Cannot open log file %s (%s); logging here instead", path, exc)

    def _recheck_queues(self) -> None:
        """Every ``QUEUE_RECHECK`` seconds with globs in ``-Q``: add the new matching
        queues, so that leases there are renewed and new children consume them (each
        child looks for itself too)."""
        now = time.monotonic()
        if self.worker.selection is None or self.broker is None or now < self._next_queue_check:
            return
        self._next_queue_check = now + self.worker.QUEUE_RECHECK
        try:
            self.worker.recheck_queues(self.broker)
        except Exception as exc:
            logger.debug("Could not look for new queues matching -Q (%s)", exc)

    def _autoscale(self) -> None:
        """Start or stop children as :class:`~.autoscale.Autoscaler` decides."""
        scaler, busy = self.autoscaler, self.busy
        now = time.monotonic()
        if scaler is None or busy is None or self.stopping or now < self._next_scale:
            return
        self._next_scale = now + scaler.INTERVAL
        active = {pid: slot for pid, slot in self.children.items() if pid not in self.retiring}
        live = len(active) + len(self.respawn)
        running = sum(1 for slot in active.values() if busy[slot])
        waiting = self._waiting()
        change = scaler.decide(now, live, running, waiting)
        if change > 0:
            taken = set(self.children.values()) | set(self.respawn)
            free = [s for s in range(self.worker.concurrency) if s not in taken][:change]
            logger.info(
                "Autoscale: %d -> %d children (%s messages waiting)",
                live,
                live + len(free),
                waiting,
            )
            for slot in free:
                self._spawn(slot)
        elif change < 0:
            idle = sorted((slot, pid) for pid, slot in active.items() if not busy[slot])
            if idle:
                slot, pid = idle[-1]
                logger.info(
                    "Autoscale: %d -> %d children (stopping idle slot %d)", live, live - 1, slot
                )
                self.retiring.add(pid)
                _signal(pid, signal.SIGTERM)

    def _waiting(self) -> int | None:
        """Messages ready in the worker's unpaused queues (``None``: Redis did not say)."""
        broker = self.broker
        if broker is None:
            return None
        try:
            paused = Monitor(broker.store().monitor).paused()
            return sum(int(broker.queue_length(q)) for q in self.worker.queues if q not in paused)
        except Exception:
            return None


def _is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP; Linux ``/proc``, else False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] in (b"T", b"t")


def _stop_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM to this child if its supervisor dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
