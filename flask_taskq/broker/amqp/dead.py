"""The dead-letter side of the AMQP broker: dead letters live in the Redis store under the
Redis broker's keys (``flask taskq dead-letter`` and the dashboard read them unchanged);
requeueing one publishes it to RabbitMQ, confirmed, before deleting it from the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..redis import RedisBroker

if TYPE_CHECKING:
    from ...serializer import Serializer
    from .side import RedisSide


class DeadLetters:
    """The :class:`~flask_taskq.broker.base.Broker` methods that read and move dead
    letters (a mixin of :class:`~flask_taskq.broker.amqp.broker.AMQPBroker`)."""

    side: RedisSide | None

    if TYPE_CHECKING:

        def _call(self, fn: Any, timeout: float | None = None) -> Any: ...

        def _publish(self, channel: Any, queue: str, priority: int, body: bytes) -> None: ...

    def dead_letters(
        self, queue: str, count: int = 100, before: str | None = None
    ) -> list[dict[str, object]]:
        """The newest dead letters of ``queue`` (as :meth:`RedisBroker.dead_letters`)."""
        return self.side.dead.dead_letters(queue, count, before) if self.side else []

    def dead_letter_get(self, queue: str, entry_id: str) -> dict[str, object] | None:
        """One dead letter, or None."""
        return self.side.dead.dead_letter_get(queue, entry_id) if self.side else None

    def dead_letter_count(self, queue: str) -> int:
        """How many dead letters ``queue`` holds in the store."""
        return self.side.dead.dead_letter_count(queue) if self.side else 0

    def dead_letter_queues(self) -> list[str]:
        """The known queues that hold dead letters."""
        return self.side.dead.dead_letter_queues() if self.side else []

    def requeue_dead(
        self, queue: str, entry_ids: Sequence[str], serializer: Serializer | None = None
    ) -> int:
        """Publish dead letters back to ``queue`` (confirmed), then delete them from the
        store; return how many moved."""
        if self.side is None:
            return 0
        from ...serializer import JSONSerializer

        serializer = serializer or JSONSerializer()
        rows = []
        for entry_id in dict.fromkeys(entry_ids):
            row = self.side.dead.dead_letter_get(queue, entry_id)
            if row is not None:
                body = row["body"]
                assert isinstance(body, bytes)
                rows.append((entry_id, body))
        if not rows:
            return 0

        def publish(channel: Any) -> None:
            for _, body in rows:
                priority = RedisBroker.dead_letter_priority(body, serializer)
                self._publish(channel, queue, priority, body)

        self._call(publish)
        return self.side.dead.delete_dead(queue, [entry_id for entry_id, _ in rows])

    def purge_dead(self, queue: str) -> int:
        """Delete every dead letter of ``queue``."""
        return self.side.dead.purge_dead(queue) if self.side else 0

    def delete_dead(self, queue: str, entry_ids: Sequence[str]) -> int:
        """Delete some dead letters of ``queue``."""
        return self.side.dead.delete_dead(queue, entry_ids) if self.side else 0
