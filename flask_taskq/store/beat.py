"""The store's beat concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol


class BeatStore(Protocol):
    """The beat lease (one active scheduler), per-fire keys (each due run sent once), and the
    last run of each periodic entry.
    """
