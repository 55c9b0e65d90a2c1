"""Which RabbitMQ queues hold a flask-taskq queue (``TASKQ_AMQP_QUEUE_TYPE``).

``classic``: one durable classic queue ``<prefix>.<queue>`` declared with
``x-max-priority = 9``: RabbitMQ delivers the highest priority first.

``quorum``: RabbitMQ's replicated queue type, which has no message priorities before
RabbitMQ 4.0 (and two levels from 4.0). Priorities 0-9 are kept in three *bands*, one
quorum queue each: ``<prefix>.<queue>#high`` (7-9), ``<prefix>.<queue>`` (4-6, the
default 5 among them) and ``<prefix>.<queue>#low`` (0-3). A worker consumes the three,
each consumer with its own prefetch window (quorum queues refuse a channel-wide one), so
a high-priority message is delivered at once however long the lower bands are, and the
worker runs what it holds highest first. Within a band messages run in the order sent.
"""

from __future__ import annotations

from typing import Any

#: The queue types ``TASKQ_AMQP_QUEUE_TYPE`` accepts.
QUEUE_TYPES = ("classic", "quorum")
#: Highest priority a classic queue is declared with (``x-max-priority``): SPEC's 0-9.
MAX_PRIORITY = 9
#: Quorum bands, highest first: (name suffix, lowest priority of the band).
BANDS = (("#high", 7), ("", 4), ("#low", 0))


class QueueLayout:
    """The RabbitMQ queue names and arguments of flask-taskq queues."""

    def __init__(self, prefix: str, queue_type: str = "classic") -> None:
        if queue_type not in QUEUE_TYPES:
            raise ValueError(
                f"TASKQ_AMQP_QUEUE_TYPE must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r}"
            )
        self.prefix = prefix
        self.queue_type = queue_type

    @property
    def quorum(self) -> bool:
        """True for quorum queues (per-consumer prefetch, priority bands)."""
        return self.queue_type == "quorum"

    def base(self, queue: str) -> str:
        """``<prefix>.<queue>``: the queue (classic), or its middle band (quorum)."""
        return f"{self.prefix}.{queue}"

    def names(self, queue: str) -> list[str]:
        """Every RabbitMQ queue of ``queue``, highest priority first."""
        if not self.quorum:
            return [self.base(queue)]
        return [self.base(queue) + suffix for suffix, _ in BANDS]

    def route(self, queue: str, priority: int) -> str:
        """The RabbitMQ queue a message of ``queue`` at ``priority`` goes to."""
        if not self.quorum:
            return self.base(queue)
        for suffix, lowest in BANDS:
            if priority >= lowest:
                return self.base(queue) + suffix
        return self.base(queue) + BANDS[-1][0]

    def arguments(self) -> dict[str, Any]:
        """The ``queue.declare`` arguments of the queues of a flask-taskq queue."""
        if self.quorum:
            return {"x-queue-type": "quorum"}
        return {"x-max-priority": MAX_PRIORITY}
