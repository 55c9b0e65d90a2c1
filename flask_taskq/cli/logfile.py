"""Logging of the long-running commands (``worker``, ``beat``): to stderr, or appended
to the file of ``-f``/``--logfile``, whose fields expand as in Celery."""

from __future__ import annotations

import os

import click

from ..worker.worker import expand_logfile, setup_logging


def setup_command_logging(loglevel: str, logfile: str | None, name: str | None = None) -> None:
    """Log at ``loglevel`` to stderr or to ``logfile`` (expanded with the worker name
    ``name``, or the host's); a one-line error if it cannot be opened."""
    if not logfile:
        setup_logging(loglevel)
        return
    try:
        path = expand_logfile(logfile, name)
        if "%i" in logfile or "%I" in logfile:  # the children's files: same checks
            child = expand_logfile(logfile, name, 1)
            folder = os.path.dirname(child) or "."
            if not os.path.isdir(folder):
                raise FileNotFoundError(2, "No such file or directory", folder)
        setup_logging(loglevel, path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot open log file {exc.filename or logfile}: {exc.strerror or exc}"
        ) from None
