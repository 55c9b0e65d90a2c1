"""Errors of the AMQP transport (importable without pika)."""

from __future__ import annotations

#: What to install for RabbitMQ support.
EXTRA_HINT = "RabbitMQ support needs the amqp extra: pip install 'flask-taskq[amqp]'"


class AMQPConnectionError(ConnectionError):
    """RabbitMQ cannot be reached, closed the connection or channel, or did not confirm
    a message. A subclass of :class:`ConnectionError`, so the worker backs off and
    retries like after a lost Redis connection, and ``.delay()`` retries briefly and
    then raises :class:`~flask_taskq.BrokerConnectionError`."""

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        #: True when the message may have reached RabbitMQ although the call failed
        #: (the connection dropped while waiting for its confirm).
        self.maybe_sent = maybe_sent


class MissingExtraError(ImportError):
    """pika is not installed."""

    def __init__(self) -> None:
        super().__init__(EXTRA_HINT)
