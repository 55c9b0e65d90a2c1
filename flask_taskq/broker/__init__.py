"""Brokers: where messages wait and how workers take and finish them."""

from __future__ import annotations

from .base import Broker, Delivery


def broker_from_url(url: str, **options: object) -> Broker:
    """Build the broker for ``TASKQ_BROKER_URL``."""
    if url.startswith("memory://"):
        from .memory import MemoryBroker

        return MemoryBroker(**options)  # type: ignore[arg-type]
    from .redis import RedisBroker

    return RedisBroker(url, **options)  # type: ignore[arg-type]


__all__ = ["Broker", "Delivery", "broker_from_url"]
