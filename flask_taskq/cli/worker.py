"""``flask taskq worker``."""

from __future__ import annotations

import logging

import click
from flask import current_app

from ..worker import POOLS, Worker
from ..worker.queues import split_option
from .common import app_state, check_broker, taskq_cli
from .imports import import_tasks
from .logfile import setup_command_logging


def _parse_autoscale(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    """``MAX,MIN`` (or ``MAX``, with MIN 0) as Celery reads it."""
    if value is None:
        return None
    most, _, least = value.partition(",")
    try:
        parsed = int(most), int(least) if least.strip() else 0
    except ValueError:
        raise click.BadParameter(f"{value!r}: give MAX,MIN, two whole numbers") from None
    if parsed[0] < 1 or not 0 <= parsed[1] <= parsed[0]:
        raise click.BadParameter(f"{value!r}: give MAX,MIN with MAX >= 1 and 0 <= MIN <= MAX")
    return parsed


@taskq_cli.command("worker")
@click.option(
    "-Q",
    "--queues",
    help="Comma-separated queues to consume; globs (mail.*) select every known queue "
    "that matches (default: all known).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    help="Child processes or threads (default: number of CPUs).",
)
@click.option("-P", "--pool", type=click.Choice(POOLS), help="Execution pool.")
@click.option(
    "-l",
    "--loglevel",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
)
@click.option(
    "-n",
    "--hostname",
    "name",
    help="Worker name; %h (host), %n (host up to its first dot), %d (domain), "
    "%i (prefork child index), %I (-%i in a child) expand as in Celery "
    "(default: <pid>@<hostname>).",
)
@click.option(
    "--prefetch", type=click.IntRange(min=1), help="Most messages a worker process leases ahead."
)
@click.option(
    "--async-concurrency",
    type=click.IntRange(min=1),
    help="Most async def tasks in flight at once per worker process "
    "(default: TASKQ_WORKER_ASYNC_CONCURRENCY, 100).",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    help="Replace a child process after this many tasks.",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    metavar="KIB",
    help="Prefork: replace a child after a task that leaves its RSS above this many KiB.",
)
@click.option(
    "--autoscale",
    callback=_parse_autoscale,
    metavar="MAX,MIN",
    help="Prefork: grow the pool up to MAX children while messages wait and every child "
    "is busy; shrink to MIN when idle.",
)
@click.option(
    "-f",
    "--logfile",
    metavar="PATH",
    help="Append the log to this file instead of stderr; %n, %h, %d, %p, %i, %I expand "
    "as in Celery (%I: a file per prefork child).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    help="Seconds running tasks get to finish after SIGTERM.",
)
@click.option(
    "-B",
    "--beat",
    "with_beat",
    is_flag=True,
    help="Also send periodic tasks (beat, in a thread of the main process).",
)
@click.option(
    "-E",
    "--events",
    "--task-events",
    "with_events",
    is_flag=True,
    help="Publish task events (TASKQ_EVENTS) from this worker, whatever the config says.",
)
@click.option(
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "celery_noop",
    is_flag=True,
    help="Accepted so that Celery command lines run; they change nothing (heartbeats "
    "are always on, there is no gossip or mingle).",
)
def worker_command(
    queues: str | None,
    concurrency: int | None,
    pool: str | None,
    loglevel: str,
    name: str | None,
    prefetch: int | None,
    async_concurrency: int | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    autoscale: tuple[int, int] | None,
    logfile: str | None,
    shutdown_timeout: float | None,
    with_beat: bool,
    with_events: bool,
    celery_noop: bool,
) -> None:
    """Start a worker that runs this app's tasks."""
    state = app_state()
    if state.is_memory:
        raise click.ClickException(
            "TASKQ_BROKER_URL is memory://: tasks run inside the app process; "
            "use a redis:// URL to run a separate worker"
        )
    if with_events:
        state.config["TASKQ_EVENTS"] = True
    setup_command_logging(loglevel, logfile, name)
    if state.config["TASKQ_SERIALIZER"] == "pickle":
        logging.getLogger("flask_taskq.worker").warning(
            "TASKQ_SERIALIZER is pickle: anyone who can write to this Redis can run code "
            "in this worker"
        )
    check_broker(state)
    import_tasks(state)
    queue_list = (split_option(queues) or None) if queues else None
    try:
        worker = Worker(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            queues=queue_list,
            concurrency=concurrency,
            pool=pool,
            name=name,
            prefetch=prefetch,
            max_tasks_per_child=max_tasks_per_child,
            shutdown_timeout=shutdown_timeout,
            autoscale=autoscale,
            max_memory_per_child=max_memory_per_child,
            logfile=logfile,
            async_concurrency=async_concurrency,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    beat = None
    if with_beat:
        from .beat import make_beat  # beat's code is loaded only for a worker that runs it

        beat = make_beat()
    click.echo(worker.describe(), err=True)
    if beat is None:
        raise SystemExit(worker.run())
    click.echo(beat.describe(), err=True)
    worker.on_stop.append(beat.stop)  # hand the lease over at the first signal
    beat.start()
    try:
        code = worker.run()
    finally:
        beat.stop(timeout=5)
    raise SystemExit(code)
