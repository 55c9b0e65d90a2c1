"""``flask taskq periodic``: add, change, pause, resume, remove, run and list periodic
entries while beat runs (:mod:`flask_taskq.periodic`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from ..periodic import PeriodicManager
from ..schedules import get_timezone
from .common import app_state, check_broker, taskq_cli
from .imports import import_tasks


@taskq_cli.group("periodic")
def periodic_group() -> None:
    """Change periodic entries while beat runs (seen within a second)."""


def _manager() -> PeriodicManager:
    state = app_state()
    if state.is_memory:
        raise click.ClickException(
            "taskq periodic needs a Redis broker: with memory:// beat's entries live in the "
            "app's process (use tq.periodic there)"
        )
    check_broker(state)
    import_tasks(state)
    return state.taskqueue.periodic


def _json(option: str, text: str | None, kind: type) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise click.ClickException(f"{option}: give a JSON {'list' if kind is list else 'object'}")
    return value


def _call(action: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``action``; bad input and unknown entries become one-line errors."""
    try:
        return action(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _schedule_options(every: str | None, cron: str | None) -> dict[str, str]:
    if every and cron:
        raise click.UsageError("give --every or --cron, not both")
    return {"every": every} if every else {"cron": cron} if cron else {}


@periodic_group.command("add")
@click.argument("name")
@click.option("--task", "task", required=True, help="The task name to send.")
@click.option("--every", help="Interval: 30s, 5m, 2h, 1d (or seconds).")
@click.option("--cron", help='Cron fields "minute hour day-of-month month day-of-week".')
@click.option("--args", "args_json", help="Positional arguments as a JSON list.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--queue", help="Queue to send to (default: the task's routing).")
def add_command(
    name: str,
    task: str,
    every: str | None,
    cron: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
) -> None:
    """Add entry NAME: send TASK on a schedule from the next period on."""
    schedule = _schedule_options(every, cron)
    if not schedule:
        raise click.UsageError("give --every or --cron")
    args = _json("--args", args_json, list) or []
    kwargs = _json("--kwargs", kwargs_json, dict) or {}
    entry = _call(_manager().add, name, task, args=args, kwargs=kwargs, queue=queue, **schedule)
    click.echo(f"Added periodic entry {name!r}: {entry.task} {entry.schedule.describe()}.")


@periodic_group.command("update")
@click.argument("name")
@click.option("--task", "task", help="The task name to send.")
@click.option("--every", help="Interval: 30s, 5m, 2h, 1d (or seconds).")
@click.option("--cron", help='Cron fields "minute hour day-of-month month day-of-week".')
@click.option("--args", "args_json", help="Positional arguments as a JSON list.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--queue", help="Queue to send to.")
def update_command(
    name: str,
    task: str | None,
    every: str | None,
    cron: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
) -> None:
    """Change what is given of entry NAME (a new schedule counts from now)."""
    schedule = _schedule_options(every, cron)
    args = _json("--args", args_json, list)
    kwargs = _json("--kwargs", kwargs_json, dict)
    entry = _call(
        _manager().update, name, task=task, args=args, kwargs=kwargs, queue=queue, **schedule
    )
    click.echo(f"Updated periodic entry {name!r}: {entry.task} {entry.schedule.describe()}.")


@periodic_group.command("pause")
@click.argument("name")
def pause_command(name: str) -> None:
    """Stop sending entry NAME until resumed."""
    done = _call(_manager().pause, name)
    click.echo(f"Paused periodic entry {name!r}." if done else f"{name!r} was paused already.")


@periodic_group.command("resume")
@click.argument("name")
def resume_command(name: str) -> None:
    """Send entry NAME again, counting from now."""
    done = _call(_manager().resume, name)
    click.echo(f"Resumed periodic entry {name!r}." if done else f"{name!r} was not paused.")


@periodic_group.command("remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Delete entry NAME."""
    _call(_manager().remove, name)
    click.echo(f"Removed periodic entry {name!r}.")


@periodic_group.command("run")
@click.argument("name")
def run_command(name: str) -> None:
    """Send entry NAME once now, outside its schedule."""
    result = _call(_manager().run, name)
    click.echo(f"Sent periodic entry {name!r}: task {result.id}.")


def _time(value: float | None, tz: Any, as_json: bool) -> str | None:
    if value is None:
        return None if as_json else "-"
    when = datetime.fromtimestamp(value, tz)
    return when.isoformat() if as_json else when.strftime("%Y-%m-%d %H:%M:%S %Z")


@periodic_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_command(as_json: bool) -> None:
    """List every periodic entry with its last run, its result's state and next run."""
    manager = _manager()
    state = app_state()
    tz = get_timezone(state.config["TASKQ_TIMEZONE"])
    rows = _call(manager.list)
    out = [
        {
            **row,
            "last_run": _time(row["last_run"], tz, as_json),
            "next_run": _time(row["next_run"], tz, as_json),
        }
        for row in rows
    ]
    if as_json:
        click.echo(json.dumps({"timezone": str(tz), "entries": out}, indent=2))
        return
    if not out:
        click.echo("No periodic entries.")
        return
    headers = ("NAME", "TASK", "SCHEDULE", "KIND", "LAST RUN", "LAST ID", "STATE", "NEXT RUN")
    table = [
        (
            row["name"],
            row["task"],
            row["schedule"],
            ("paused" if row["paused"] else "run-time") if row["dynamic"] else "static",
            row["last_run"],
            row["last_id"] or "-",
            row["last_state"] or "-",
            row["next_run"],
        )
        for row in out
    ]
    widths = [max(len(str(r[i])) for r in (headers, *table)) for i in range(len(headers))]
    for line in (headers, *table):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
