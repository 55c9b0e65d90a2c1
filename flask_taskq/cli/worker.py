"""``flask taskq worker``."""

from __future__ import annotations

import logging

import click
from flask import current_app

from ..worker import POOLS, Worker, setup_logging
from .beat import make_beat
from .common import app_state, check_broker, queue_names, taskq_cli
from .imports import import_tasks


@taskq_cli.command("worker")
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: all known).")
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
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    help="Replace a child process after this many tasks.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    help="Seconds running tasks get to finish after SIGTERM.",
)
@click.option(
    "--beat",
    "with_beat",
    is_flag=True,
    help="Also send periodic tasks (beat, in a thread of the main process).",
)
def worker_command(
    queues: str | None,
    concurrency: int | None,
    pool: str | None,
    loglevel: str,
    name: str | None,
    prefetch: int | None,
    max_tasks_per_child: int | None,
    shutdown_timeout: float | None,
    with_beat: bool,
) -> None:
    """Start a worker that runs this app's tasks."""
    state = app_state()
    if state.is_memory:
        raise click.ClickException(
            "TASKQ_BROKER_URL is memory://: tasks run inside the app process; "
            "use a redis:// URL to run a separate worker"
        )
    setup_logging(loglevel)
    if state.config["TASKQ_SERIALIZER"] == "pickle":
        logging.getLogger("flask_taskq.worker").warning(
            "TASKQ_SERIALIZER is pickle: anyone who can write to this Redis can run code "
            "in this worker"
        )
    check_broker(state)
    import_tasks(state)
    queue_list = queue_names(state, queues) if queues else None
    try:
        worker = Worker(
            current_app._get_current_object(),
            queues=queue_list,  # type: ignore[attr-defined]
            concurrency=concurrency,
            pool=pool,
            name=name,
            prefetch=prefetch,
            max_tasks_per_child=max_tasks_per_child,
            shutdown_timeout=shutdown_timeout,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    beat = make_beat() if with_beat else None
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
