"""``flask taskq queues pause|resume``."""

from __future__ import annotations

import click

from ..monitor import HEARTBEAT_INTERVAL, Monitor
from .common import app_state, check_broker, taskq_cli


def _monitor() -> Monitor:
    state = app_state()
    check_broker(state)
    return Monitor(state.store.monitor)


@taskq_cli.group("queues")
def queues_group() -> None:
    """Pause and resume queues for every worker."""


@queues_group.command("pause")
@click.argument("queues", nargs=-1, required=True)
def pause_command(queues: tuple[str, ...]) -> None:
    """Workers stop fetching from QUEUES (running tasks finish; nothing is lost)."""
    _monitor().pause(queues)
    click.echo(
        f"Paused {', '.join(queues)}: workers stop fetching within {HEARTBEAT_INTERVAL + 1:.0f} s."
    )


@queues_group.command("resume")
@click.argument("queues", nargs=-1, required=True)
def resume_command(queues: tuple[str, ...]) -> None:
    """Workers fetch from QUEUES again."""
    _monitor().resume(queues)
    click.echo(f"Resumed {', '.join(queues)}.")
