"""Helpers shared by the ``flask taskq`` commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

if TYPE_CHECKING:
    from ..state import AppState

taskq_cli = AppGroup("taskq", help="Run and manage flask-taskq workers and queues.")


def app_state() -> AppState:
    """The current app's flask-taskq state, or a one-line error."""
    state: AppState | None = current_app.extensions.get("taskq")
    if state is None:
        raise click.ClickException("this app has no TaskQueue (call tq.init_app(app))")
    return state


def check_broker(state: AppState) -> None:
    """Fail with one line if the broker's server cannot be reached."""
    try:
        state.broker.ping()
    except state.broker.errors as exc:
        from ..state import redact_url

        raise click.ClickException(
            f"cannot reach Redis at {redact_url(state.broker_url)}: {exc}"
        ) from None


def queue_names(state: AppState, option: str | None) -> list[str]:
    """Queues from a ``-Q a,b`` option, or every queue the app knows."""
    from ..worker import default_queues

    if option:
        return [q.strip() for q in option.split(",") if q.strip()]
    return default_queues(state)
