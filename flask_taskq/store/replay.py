"""The store's replay concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol


class ReplayStore(Protocol):
    """Where each signed task's attempt started, so a replayed message is refused."""
