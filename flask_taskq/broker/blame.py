"""Which server an error came from, for the log lines about outages: a worker on RabbitMQ
with a Redis store must say which of the two stopped answering."""

from __future__ import annotations

from .amqp.errors import AMQPConnectionError

#: Top-level module of an exception's class -> the server it speaks of.
_BY_MODULE = {"redis": "Redis", "pika": "RabbitMQ", "sqlalchemy": "The result database"}


def broker_server(broker: object) -> str:
    """The name of the server behind ``broker``: "RabbitMQ" or "Redis"."""
    return "RabbitMQ" if ".amqp." in type(broker).__module__ else "Redis"


def server_of(exc: BaseException, default: str = "Redis") -> str:
    """The server ``exc`` speaks of: RabbitMQ for the AMQP transport's errors, Redis for
    redis-py's, else ``default`` (the broker's server: its raw-socket commands raise the
    built-in ``OSError`` family)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a BrokerConnectionError names the error it wraps
        if seen is None:
            break
        if isinstance(seen, AMQPConnectionError):
            return "RabbitMQ"
        server = _BY_MODULE.get(type(seen).__module__.split(".")[0])
        if server is not None:
            return server
        seen = seen.__cause__ or seen.__context__
    return default
