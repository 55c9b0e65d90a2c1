"""Brokers: where messages wait and how workers take and finish them."""

from __future__ import annotations

from .amqp import is_amqp_url
from .base import Broker, Delivery, QueueStats
from .memory import MemoryBroker
from .redis import RedisBroker

#: What a broker flask-taskq ships raises when its server cannot be reached, whichever
#: broker it is (each broker names its own in ``connection_errors``).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *RedisBroker.connection_errors,
    *MemoryBroker.connection_errors,
)
#: What a broker flask-taskq ships raises when its server is unreachable or refuses for
#: now (each broker names its own in ``errors``): a worker retries, never dies of them.
ERRORS: tuple[type[BaseException], ...] = (*RedisBroker.errors, *MemoryBroker.errors)


def broker_from_url(url: str, **options: object) -> Broker:
    """Build the broker for ``TASKQ_BROKER_URL``."""
    if url.startswith("memory://"):
        return MemoryBroker(**options)
    if is_amqp_url(url):  # RabbitMQ: needs the amqp extra (pika)
        from .amqp.broker import AMQPBroker

        return AMQPBroker(url, **options)  # type: ignore[arg-type]
    return RedisBroker(url, **options)  # type: ignore[arg-type]


__all__ = [
    "CONNECTION_ERRORS",
    "ERRORS",
    "Broker",
    "Delivery",
    "QueueStats",
    "broker_from_url",
]
