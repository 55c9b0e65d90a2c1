"""``flask taskq purge``."""

from __future__ import annotations

import click

from .common import app_state, check_broker, queue_names, taskq_cli


@taskq_cli.command("purge")
@click.option("-Q", "--queues", help="Comma-separated queues (default: all known).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queues: str | None, yes: bool) -> None:
    """Delete the waiting messages of queues (running ones are left alone)."""
    state = app_state()
    check_broker(state)
    names = queue_names(state, queues)
    if not yes:
        click.confirm(f"Delete every waiting message of {', '.join(names)}?", abort=True)
    total = sum(state.broker.purge(q) for q in names)
    click.echo(f"Purged {total} message(s) from {', '.join(names)}.")
