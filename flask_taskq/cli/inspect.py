"""``flask taskq inspect``: what is in Redis, read without asking any worker.

Each section is a sub-command (``inspect scheduled``); ``--json`` after it prints one JSON
document whose field names are the table's column names in snake_case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import click
from flask import current_app

from ..beat import read_schedule
from ..schedules import get_timezone
from .common import app_state, check_broker, queue_names, taskq_cli

if TYPE_CHECKING:
    from ..state import AppState

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of tables."
)

PERIODIC_COLUMNS = {
    "name": "NAME",
    "task": "TASK",
    "schedule": "SCHEDULE",
    "catch_up": "CATCH UP",
    "last_run": "LAST RUN",
    "next_run": "NEXT RUN",
}
DELAYED_COLUMNS = {"queue": "QUEUE", "delayed": "DELAYED", "next_due": "NEXT DUE"}


@taskq_cli.group("inspect", invoke_without_command=True)
@click.pass_context
def inspect_group(ctx: click.Context) -> None:
    """Look at queues, tasks and beat as Redis holds them. Without a sub-command, print a
    summary."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(inspect_group.commands["summary"], as_json=False, watch=False, interval=2.0)
        ctx.invoke(scheduled_command)


def inspect_state() -> AppState:
    """The current app's state, its broker reachable (else a one-line error). Inspect reads
    through the transport and the store, so it works on every broker; on ``memory://`` it
    shows this process's queues and in-process worker."""
    state = app_state()
    check_broker(state)
    return state


def _time(value: float | None, tz: tzinfo, as_json: bool) -> str | None:
    if value is None:
        return None
    when = datetime.fromtimestamp(value, tz)
    return when.isoformat(timespec="seconds") if as_json else when.strftime("%Y-%m-%d %H:%M:%S %Z")


def _delayed(state: AppState) -> list[dict[str, Any]]:
    """Per queue, how many delayed messages wait and when the first is due."""
    names = queue_names(state, None)
    names += sorted(state.broker.known_queues() - set(names))
    stats = state.broker.queue_stats(names)
    return [
        {"queue": queue, "delayed": stats[queue].delayed, "next_due": stats[queue].next_due}
        for queue in names
    ]


def text_table(columns: dict[str, str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """``rows`` as aligned text lines under ``columns``' headings (``-`` for None)."""
    cells = [["-" if r[k] is None else str(r[k]) for k in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns.values())]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(columns.values()), *cells]
    ]


@inspect_group.command("scheduled")
@json_option
def scheduled_command(as_json: bool = False) -> None:
    """Periodic entries (schedule, last and next run in TASKQ_TIMEZONE), the beat that
    leads, and the delayed tasks (countdown/ETA) of each queue."""
    state = inspect_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        tz = get_timezone(state.config["TASKQ_TIMEZONE"])
        beat = read_schedule(app)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    periodic = [
        {
            **{k: e[k] for k in ("name", "task", "schedule", "catch_up")},
            "last_run": _time(e["last_run"], tz, as_json),
            "next_run": _time(e["next_run"], tz, as_json),
        }
        for e in beat["entries"]
    ]
    raw = _delayed(state)
    total = sum(row["delayed"] for row in raw)
    first = min((row["next_due"] for row in raw if row["next_due"] is not None), default=None)
    delayed = [{**row, "next_due": _time(row["next_due"], tz, as_json)} for row in raw]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "timezone": beat["timezone"],
                    "beat_leader": beat["leader"],
                    "lease_expires_in": beat["lease_ttl"],
                    "periodic": periodic,
                    "delayed": delayed,
                    "delayed_total": total,
                    "delayed_next_due": _time(first, tz, as_json),
                },
                indent=2,
            )
        )
        return
    if periodic:
        click.echo(f"Periodic tasks (times in {beat['timezone']}):")
        for line in text_table(PERIODIC_COLUMNS, periodic):
            click.echo(f"  {line}")
    else:
        click.echo("No periodic tasks.")
    if beat["leader"]:
        ttl = beat["lease_ttl"]
        expiry = f" (lease expires in {ttl:.1f}s)" if ttl is not None else ""
        click.echo(f"Beat: led by {beat['leader']}{expiry}.")
    else:
        click.echo("Beat: none is running (no beat holds the lease).")
    waiting = [row for row in delayed if row["delayed"]]
    if not waiting:
        click.echo("Delayed tasks: none.")
        return
    click.echo(f"Delayed tasks: {total} (next due {_time(first, tz, as_json)}):")
    for line in text_table(DELAYED_COLUMNS, waiting):
        click.echo(f"  {line}")
