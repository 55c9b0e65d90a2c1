"""The ``flask taskq`` command group: one module per command."""

from . import (  # noqa: F401 - registers the commands
    beat,
    db,
    dead_letter,
    events,
    inspect,
    inspect_concurrency,
    inspect_workers,
    inspect_workflow,
    periodic,
    purge,
    queues,
    rate_limit,
    revoke,
    status,
    worker,
    workflow,
)
from .common import taskq_cli

__all__ = ["taskq_cli"]
