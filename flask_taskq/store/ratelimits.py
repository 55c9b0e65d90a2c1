"""The store's ratelimits concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol


class RateLimitStore(Protocol):
    """Token buckets per task name and the rate overrides set at run time."""
