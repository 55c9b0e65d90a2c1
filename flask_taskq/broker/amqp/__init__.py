"""RabbitMQ (AMQP 0-9-1) as the transport: ``TASKQ_BROKER_URL = "amqp://..."``.

Importing this package needs nothing beyond flask-taskq; :class:`AMQPBroker` lives in
:mod:`flask_taskq.broker.amqp.broker` and needs the ``amqp`` extra (pika). See
docs/rabbitmq.rst.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import AMQPConnectionError, MissingExtraError

#: URL schemes that select this transport.
SCHEMES = ("amqp://", "amqps://")
#: URL schemes of a Redis store.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


def is_amqp_url(url: str) -> bool:
    """True for an ``amqp://`` or ``amqps://`` URL."""
    return url.lower().startswith(SCHEMES)


def store_url(config: Mapping[str, Any]) -> str | None:
    """The Redis URL of the store beside an AMQP broker: ``TASKQ_STORE_URL``, else
    ``TASKQ_RESULT_BACKEND`` when it is a Redis URL, else None (no store)."""
    for key in ("TASKQ_STORE_URL", "TASKQ_RESULT_BACKEND"):
        url = config.get(key)
        if isinstance(url, str) and url.lower().startswith(REDIS_SCHEMES):
            return url
    return None


__all__ = ["SCHEMES", "AMQPConnectionError", "MissingExtraError", "is_amqp_url", "store_url"]
