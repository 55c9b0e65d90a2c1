"""``flask taskq inspect concurrency``: the per-key concurrency limits at their limit
(holders, waiting messages), as the store holds them."""

from __future__ import annotations

import json

import click

from ..concurrency import key_states
from .inspect import inspect_group, inspect_state, json_option, text_table

COLUMNS = {
    "task": "TASK",
    "key": "KEY",
    "limit": "LIMIT",
    "running": "RUNNING",
    "waiting": "WAITING",
}


@inspect_group.command("concurrency")
@json_option
@click.option("--all", "everything", is_flag=True, help="Also keys below their limit.")
def concurrency_command(as_json: bool = False, everything: bool = False) -> None:
    """Concurrency keys at their limit: tasks running (holding a slot) and waiting."""
    state = inspect_state()
    rows = []
    for s in key_states(state.store.concurrency, everything):
        task, _, key = s.key.partition(":")
        rows.append(
            {"task": task, "key": key, "limit": s.limit, "running": s.holders, "waiting": s.waiting}
        )
    if as_json:
        click.echo(json.dumps({"concurrency": rows}, indent=2))
        return
    if not rows:
        click.echo("No concurrency key is at its limit.")
        return
    click.echo("Concurrency keys at their limit:")
    for line in text_table(COLUMNS, rows):
        click.echo(f"  {line}")
