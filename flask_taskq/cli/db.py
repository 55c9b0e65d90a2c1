"""``flask taskq db create`` and ``flask taskq db cleanup``: the tables of the SQL result
backend (:mod:`flask_taskq.backend.sql`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..exceptions import BrokerConnectionError
from .common import app_state, taskq_cli

if TYPE_CHECKING:
    from ..backend.sql import SQLBackend


@taskq_cli.group("db")
def db_group() -> None:
    """The tables of the SQL result backend."""


def _sql_backend() -> SQLBackend:
    state = app_state()
    from ..backend.sql import SQLBackend

    backend = state.backend
    if not isinstance(backend, SQLBackend):
        raise click.ClickException(
            f"TASKQ_RESULT_BACKEND is not a SQL database ({state.result_url!r}); "
            'set it to a SQLAlchemy URL or "flask-sqlalchemy"'
        )
    return backend


@db_group.command("create")
def create_command() -> None:
    """Create the result tables (taskq_result, taskq_group) that do not exist yet."""
    backend = _sql_backend()
    try:
        created = backend.create_tables()
    except (BrokerConnectionError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(f"cannot create the result tables: {exc}") from None
    where = backend.describe()
    if created:
        click.echo(f"Created {', '.join(created)} in {where}.")
    else:
        click.echo(f"The result tables exist already in {where}.")


@db_group.command("cleanup")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(min=1))
def cleanup_command(batch: int) -> None:
    """Delete expired results now (workers also do it about once a minute)."""
    backend = _sql_backend()
    try:
        removed = backend.cleanup(batch=batch)
    except (BrokerConnectionError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Deleted {removed} expired row(s).")
