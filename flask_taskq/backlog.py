"""The backlog of each queue, for people and autoscalers: what ``inspect queues``, the
dashboard's queue views and the Prometheus metrics show.

Per queue: ``ready`` (waiting for a worker), ``reserved`` (delivered to a worker and not yet
acknowledged: prefetched or running), ``delayed`` (waiting for a countdown, an ETA or a
retry's backoff) and ``backlog``, their sum: the work sent and not yet finished, which is
what an autoscaler should scale on (the ready count alone hides what workers prefetched).
A sharded queue (``TASKQ_QUEUE_SHARDS``) shows its totals and, in ``shards``, the same
figures for each shard; an unsharded queue has an empty ``shards`` list. See
docs/autoscaling.rst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .broker.base import Broker, QueueStats

#: The counts of a queue (and of a shard), in the order they are shown.
COUNTS = ("ready", "reserved", "delayed", "backlog")


@dataclass(frozen=True, slots=True)
class Backlog:
    """The counts of one queue or shard (``name``)."""

    name: str
    ready: int = 0
    reserved: int = 0
    delayed: int = 0
    dead: int = 0
    next_due: float | None = None
    shards: tuple[Backlog, ...] = field(default=())

    @property
    def backlog(self) -> int:
        """Messages sent and not finished: ready + reserved + delayed."""
        return self.ready + self.reserved + self.delayed

    @classmethod
    def of(cls, name: str, stats: QueueStats, shards: Sequence[Backlog] = ()) -> Backlog:
        """The backlog of ``name`` from what the broker read."""
        return cls(
            name,
            ready=stats.ready,
            reserved=stats.leased,
            delayed=stats.delayed,
            dead=stats.dead,
            next_due=stats.next_due,
            shards=tuple(shards),
        )

    def counts(self) -> dict[str, int]:
        """``{"ready": .., "reserved": .., "delayed": .., "backlog": ..}``."""
        return {k: int(getattr(self, k)) for k in COUNTS}

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``inspect queues --json``): the counts, ``dead``, and
        ``shards``, a list of ``{"shard": <name>, <counts>}`` (empty when unsharded)."""
        return {
            "queue": self.name,
            **self.counts(),
            "dead": self.dead,
            "shards": [{"shard": s.name, **s.counts()} for s in self.shards],
        }


def read_backlogs(broker: Broker, queues: Sequence[str]) -> dict[str, Backlog]:
    """The backlog of each of ``queues``: one :meth:`~Broker.queue_stats` read, plus one
    per sharded queue for its shards (a broker that shards queues has ``shard_stats``)."""
    names = list(dict.fromkeys(queues))
    stats = broker.queue_stats(names)
    per_shard = getattr(broker, "shard_stats", None)
    sharded: Mapping[str, int] = getattr(broker, "queue_shards", None) or {}
    out = {}
    for name in names:
        shards: list[Backlog] = []
        if per_shard is not None and sharded.get(name, 1) > 1:
            shard_stats: dict[str, QueueStats] = per_shard(name)
            shards = [Backlog.of(s, st) for s, st in shard_stats.items()]
        out[name] = Backlog.of(name, stats[name], shards)
    return out
