"""The ``flask taskq`` command group: one module per command."""

from . import dead_letter, purge, rate_limit, revoke, worker  # noqa: F401 - registers the commands
from .common import taskq_cli

__all__ = ["taskq_cli"]
