"""``flask taskq revoke``."""

from __future__ import annotations

import click

from .common import app_state, check_broker, taskq_cli


@taskq_cli.command("revoke")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True, help="Also stop the task if it is running.")
def revoke_command(task_ids: tuple[str, ...], terminate: bool) -> None:
    """Revoke tasks: waiting ones never run; with --terminate running ones are stopped."""
    state = app_state()
    check_broker(state)
    state.revocations.revoke(task_ids, terminate=terminate)
    verb = "Revoked and terminating" if terminate else "Revoked"
    click.echo(f"{verb} {len(task_ids)} task(s): {', '.join(task_ids)}")
