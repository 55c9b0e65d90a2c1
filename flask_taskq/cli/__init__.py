"""The ``flask taskq`` command group: one module per command, imported when its command
is asked for (``common.COMMAND_MODULES``)."""

from .common import taskq_cli

__all__ = ["taskq_cli"]
