"""``flask taskq rate-limit``: change rate limits at runtime, for all workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..ratelimit import RateLimiter, format_rate, parse_rate
from .common import app_state, check_broker, taskq_cli

if TYPE_CHECKING:
    from ..state import AppState


def _declared(state: AppState, task_name: str) -> str | None:
    """The ``rate_limit`` ``task_name`` declares in this app, as text, or None."""
    task = state.taskqueue.tasks.get(task_name)
    value = task.options.get("rate_limit") if task is not None else None
    if value is None:
        return None
    try:
        rate = parse_rate(value)
    except ValueError:
        return str(value)
    return None if rate is None else str(value)


def _describe(rate_text: str) -> str:
    """``"20/s"`` or ``"1200/m (20/s)"``: the text, and the rate when it reads differently."""
    try:
        shown = format_rate(parse_rate(rate_text))
    except ValueError:
        return f"{rate_text} (invalid, ignored by workers)"
    return rate_text if shown == rate_text else f"{rate_text} ({shown})"


@taskq_cli.command("rate-limit")
@click.argument("task", required=False)
@click.argument("rate", required=False)
def rate_limit_command(task: str | None, rate: str | None) -> None:
    """Set the rate limit of TASK for all workers, e.g. ``rate-limit myapp.send 20/s``.

    RATE is N/s, N/m or N/h, or a plain number per second; "off" removes the runtime
    limit so the task's own rate_limit applies again. Without RATE, show TASK's limit;
    without arguments, list the limits set at runtime. Workers pick up a change within
    about a second.
    """
    state = app_state()
    check_broker(state)
    limiter = RateLimiter(state.store.rate_limits, errors=state.store.errors)

    if task is None:
        overrides = limiter.overrides()
        if not overrides:
            click.echo("No rate limits set at runtime: tasks use their own rate_limit.")
            return
        width = max(len(name) for name in overrides)
        for name in sorted(overrides):
            line = f"{name:<{width}}  {_describe(overrides[name])}"
            declared = _declared(state, name)
            if declared is not None:
                line += f"  (declared: {declared})"
            click.echo(line)
        return

    declared = _declared(state, task)
    if rate is None:
        current = limiter.overrides().get(task)
        own = f"declared {declared}" if declared else "no rate limit declared"
        if current is not None:
            click.echo(f"{task}: {_describe(current)} (set at runtime; {own})")
        else:
            click.echo(f"{task}: {declared + ' (declared)' if declared else 'no rate limit'}")
    else:
        try:
            new = limiter.set_rate(task, rate)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if new is not None:
            click.echo(f"Rate limit of {task} set to {_describe(rate.strip())} for all workers.")
        elif declared:
            click.echo(
                f"Removed the runtime rate limit of {task}: its declared {declared} applies again."
            )
        else:
            click.echo(f"Removed the runtime rate limit of {task}: it has no limit now.")
    if task not in state.taskqueue.tasks:
        click.echo(f"Note: no task named {task!r} is registered in this app.", err=True)
