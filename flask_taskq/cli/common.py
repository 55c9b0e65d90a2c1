"""Helpers shared by the ``flask taskq`` commands."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

if TYPE_CHECKING:
    from ..state import AppState

#: Each ``flask taskq`` command and the modules that define it (``flask_taskq.cli.<name>``):
#: a command's module is imported when the command is asked for, so that ``flask taskq
#: worker`` does not load the code of every other command.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "beat": ("beat",),
    "db": ("db",),
    "dead-letter": ("dead_letter",),
    "events": ("events",),
    "inspect": ("inspect", "inspect_workers", "inspect_workflow", "inspect_concurrency"),
    "periodic": ("periodic",),
    "purge": ("purge",),
    "queues": ("queues",),
    "rate-limit": ("rate_limit",),
    "revoke": ("revoke",),
    "status": ("status",),
    "worker": ("worker",),
    "workflow": ("workflow",),
}


class LazyGroup(AppGroup):
    """An :class:`AppGroup` whose commands are imported on first use (see
    :data:`COMMAND_MODULES`); their modules add them with ``@taskq_cli.command``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            for module in COMMAND_MODULES[cmd_name]:
                importlib.import_module(f"{__package__}.{module}")
        return super().get_command(ctx, cmd_name)


taskq_cli = LazyGroup("taskq", help="Run and manage flask-taskq workers and queues.")


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
        raise click.ClickException(state.unreachable(exc)) from None


def queue_names(state: AppState, option: str | None) -> list[str]:
    """Queues from a ``-Q a,b`` option, or every queue the app knows."""
    from ..worker import default_queues

    if option:
        return [q.strip() for q in option.split(",") if q.strip()]
    return default_queues(state)
