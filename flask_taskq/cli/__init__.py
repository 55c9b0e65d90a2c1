"""The ``flask taskq`` command group: one module per command."""

from . import purge, worker  # noqa: F401 - registers the commands
from .common import taskq_cli

__all__ = ["taskq_cli"]
