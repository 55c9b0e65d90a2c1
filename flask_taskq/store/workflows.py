"""The store's workflows concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol


class WorkflowStore(Protocol):
    """Chord counters and member results, the once-only firing of a chord callback, group
    results, and workflow graph documents.
    """
