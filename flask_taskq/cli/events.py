"""``flask taskq events``: tail the task events stream (``TASKQ_EVENTS``) live."""

from __future__ import annotations

import json
import time

import click

from .common import app_state, taskq_cli

#: How long one read waits for an event before asking again (seconds).
BLOCK = 1.0
#: The fields every event has, printed first in the human form.
_HEAD = ("ts", "type", "task", "id")


def _human(fields: dict[str, str]) -> str:
    """One event as a line: time, type, ``task[id]``, then the other fields."""
    try:
        when = time.strftime("%H:%M:%S", time.localtime(float(fields.get("ts", "0"))))
        when += f".{float(fields.get('ts', '0')) % 1:.3f}"[2:]
    except ValueError:
        when = fields.get("ts", "?")
    rest = " ".join(f"{k}={v}" for k, v in fields.items() if k not in _HEAD)
    return (
        f"{when} {fields.get('type', '?'):<18} {fields.get('task', '?')}[{fields.get('id', '?')}]"
        f" {rest}"
    ).rstrip()


@taskq_cli.command("events")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def events_command(as_json: bool) -> None:
    """Print task events as they happen (TASKQ_EVENTS or workers started with -E), until
    Ctrl-C."""
    state = app_state()
    store = state.store.events
    if not store.shared:
        raise click.ClickException(
            "task events are kept in the app's own process with this broker (memory://, "
            "or AMQP without TASKQ_STORE_URL): use a Redis broker or store to tail them"
        )
    try:
        state.store.ping()
        after = store.last_id()
    except state.store.errors as exc:
        raise click.ClickException(f"cannot reach the events stream's Redis: {exc}") from None
    click.echo("Tailing task events (Ctrl-C to stop)", err=True)
    try:
        while True:
            try:
                rows = store.read(after, 100, BLOCK)
            except state.store.errors as exc:
                raise click.ClickException(f"lost the events stream's Redis: {exc}") from None
            for entry_id, fields in rows:
                after = entry_id
                if as_json:
                    click.echo(json.dumps({"stream_id": entry_id, **fields}))
                else:
                    click.echo(_human(fields))
    except KeyboardInterrupt:
        return
