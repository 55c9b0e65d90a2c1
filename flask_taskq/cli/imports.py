"""``TASKQ_IMPORTS`` at the start of ``flask taskq worker`` and ``flask taskq beat``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..state import import_task_modules

if TYPE_CHECKING:
    from ..state import AppState


def import_tasks(state: AppState) -> None:
    """Import the app's ``TASKQ_IMPORTS``, or fail with one line naming the module."""
    try:
        import_task_modules(state.app)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
