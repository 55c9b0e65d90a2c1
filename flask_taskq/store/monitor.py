"""The store's monitor concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol


class MonitorStore(Protocol):
    """Heartbeats and process documents of workers, per-minute task counters and runtime
    histograms, the recent-failures index, paused queues.
    """
