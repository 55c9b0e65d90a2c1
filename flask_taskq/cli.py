"""The ``flask taskq`` command group."""

from __future__ import annotations

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from .worker import POOLS, Worker, setup_logging

taskq_cli = AppGroup("taskq", help="Run and manage flask-taskq workers.")


def _state():
    state = current_app.extensions.get("taskq")
    if state is None:
        raise click.ClickException("this app has no TaskQueue (call tq.init_app(app))")
    return state


def _check_broker(state) -> None:
    client = getattr(state.broker, "client", None)
    if client is None:
        return
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        from .extension import _redact

        raise click.ClickException(
            f"cannot reach Redis at {_redact(state.broker_url)}: {exc}"
        ) from None


@taskq_cli.command("worker")
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: all known).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1),
              help="Child processes or threads (default: number of CPUs).")
@click.option("-P", "--pool", type=click.Choice(POOLS), help="Execution pool.")
@click.option("-l", "--loglevel", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                case_sensitive=False))
@click.option("-n", "--hostname", "name", help="Worker name (default: <pid>@<hostname>).")
@click.option("--prefetch", type=click.IntRange(min=1),
              help="Most messages a worker process leases ahead.")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1),
              help="Replace a child process after this many tasks.")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0),
              help="Seconds running tasks get to finish after SIGTERM.")
def worker_command(queues: str | None, concurrency: int | None, pool: str | None,
                   loglevel: str, name: str | None, prefetch: int | None,
                   max_tasks_per_child: int | None, shutdown_timeout: float | None) -> None:
    """Start a worker that runs this app's tasks."""
    state = _state()
    if state.is_memory:
        raise click.ClickException(
            "TASKQ_BROKER_URL is memory://: tasks run inside the app process; "
            "use a redis:// URL to run a separate worker"
        )
    setup_logging(loglevel)
    _check_broker(state)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    try:
        worker = Worker(current_app._get_current_object(), queues=queue_list,  # type: ignore[attr-defined]
                        concurrency=concurrency, pool=pool, name=name, prefetch=prefetch,
                        max_tasks_per_child=max_tasks_per_child,
                        shutdown_timeout=shutdown_timeout)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(worker.describe(), err=True)
    raise SystemExit(worker.run())


@taskq_cli.command("purge")
@click.option("-Q", "--queues", help="Comma-separated queues (default: all known).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queues: str | None, yes: bool) -> None:
    """Delete the waiting messages of queues (running ones are left alone)."""
    from .worker import default_queues

    state = _state()
    _check_broker(state)
    names = [q.strip() for q in queues.split(",")] if queues else default_queues(state)
    if not yes:
        click.confirm(f"Delete every waiting message of {', '.join(names)}?", abort=True)
    total = sum(state.broker.purge(q) for q in names)
    click.echo(f"Purged {total} message(s) from {', '.join(names)}.")
