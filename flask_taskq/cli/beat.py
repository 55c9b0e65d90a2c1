"""``flask taskq beat``: send periodic tasks when they are due (safe on every host)."""

from __future__ import annotations

import logging
import os
import signal
import threading

import click
from flask import current_app

from ..beat import DEFAULT_LEASE, Beat
from .common import app_state, check_broker, taskq_cli
from .imports import import_tasks
from .logfile import setup_command_logging

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)


def make_beat(lease: float = DEFAULT_LEASE) -> Beat:
    """A beat for the current app, or a one-line error (bad schedule, memory broker)."""
    if app_state().is_memory:
        raise click.ClickException(
            "taskq beat needs a Redis broker: with memory:// tasks and beat's state live in "
            "the app's process (start Beat(app) there)"
        )
    try:
        return Beat(current_app._get_current_object(), lease=lease)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@taskq_cli.command("beat")
@click.option("-l", "--loglevel", default="WARNING", show_default=True, type=LOG_LEVELS)
@click.option(
    "--lease",
    type=click.FloatRange(min=0.5),
    default=DEFAULT_LEASE,
    show_default=True,
    help="Seconds a leading beat that stopped renewing keeps the lead: another "
    "beat takes over a crashed leader within this time.",
)
@click.option(
    "-f",
    "--logfile",
    metavar="PATH",
    help="Append the log to this file instead of stderr; %n, %h, %d, %p expand as for "
    "the worker (from the host name).",
)
def beat_command(loglevel: str, lease: float, logfile: str | None) -> None:
    """Send periodic tasks when they are due.

    Run one on every host if you like: one leads at a time, each due time is sent once,
    and another takes over within the lease when the leader dies. SIGTERM or Ctrl-C stops
    at once and hands the lead over."""
    state = app_state()
    setup_command_logging(loglevel, logfile)
    check_broker(state)
    import_tasks(state)
    beat = make_beat(lease)
    click.echo(beat.describe(), err=True)
    signalled: list[int] = []

    def handle(signum: int, frame: object) -> None:
        if signalled:
            logging.getLogger("flask_taskq.beat").warning("Second signal: exiting now")
            os._exit(1)
        signalled.append(signum)
        # Event.set() takes a lock the interrupted main thread may hold: use a thread.
        threading.Thread(target=beat.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    beat.run()
