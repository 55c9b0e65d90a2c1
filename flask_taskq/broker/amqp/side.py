"""What the AMQP broker keeps in its Redis store: delayed messages (countdown, ETA,
retries) until they are due, dead letters, unique locks, start counts of redelivered
messages and the set of known queues. The keys are those of the Redis broker, so the
``flask taskq dead-letter`` commands and the dashboard read them the same way."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from ...keys import Keys
from ...redis_common import connect, load_script
from ..redis import MAX_DEAD_LETTERS, RedisBroker

#: How long a claimed delayed message waits before another worker may publish it, if
#: its claimer died before RabbitMQ confirmed it (seconds).
CLAIM_LEASE = 30.0
#: How long the note of a consumer's parked copies outlives its last renewal (seconds).
PARKED_TTL = 3600
#: How long the start count of a redelivered message is kept (seconds).
STARTS_TTL = 86400


class RedisSide:
    """The AMQP broker's state in Redis (one client, the store's)."""

    def __init__(self, url: str, keys: Keys, dead_letter_max_bytes: int) -> None:
        self.client: redis.Redis = connect(url)
        self.keys = keys
        self.dead_letter_max_bytes = dead_letter_max_bytes
        #: The Redis broker's reads of dead letters work unchanged on the same keys.
        self.dead = RedisBroker(
            url,
            key_prefix=keys.prefix,
            client=self.client,
            dead_letter_max_bytes=dead_letter_max_bytes,
        )
        self._scripts = {
            name: load_script(self.client, name)
            for name in ("amqp_claim_due", "dead_letter", "note_start", "release_unique")
        }

    # -- delayed messages -------------------------------------------------------------------
    def delay(self, items: Iterable[tuple[str, int, bytes, float]]) -> None:
        """Keep ``(queue, priority, body, due)`` messages until they are due."""
        pipe = self.client.pipeline(transaction=False)
        for queue, priority, body, due in items:
            pipe.zadd(self.keys.delayed(queue), {str(priority).encode() + body: due})
        pipe.execute()

    def put(self, items: Iterable[tuple[str, bytes, float]]) -> None:
        """Add ``(queue, member, due)`` entries to the delayed sets as they are."""
        pipe = self.client.pipeline(transaction=False)
        for queue, member, due in items:
            pipe.zadd(self.keys.delayed(queue), {member: due})
        pipe.execute()

    def claim_due(
        self, queues: Sequence[str], limit: int
    ) -> tuple[list[tuple[str, bytes]], float | None]:
        """Claim the due delayed messages of ``queues``: ``(queue, member)`` pairs (the
        member is the priority digit and the body), and the next due time, if any."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        script = self._scripts["amqp_claim_due"]
        for queue in queues:
            script(
                keys=[self.keys.delayed(queue)],
                args=[f"{now:.6f}", limit, f"{now + CLAIM_LEASE:.6f}"],
                client=pipe,
            )
        claimed: list[tuple[str, bytes]] = []
        due: list[float] = []
        for queue, reply in zip(queues, pipe.execute(), strict=True):
            first, *members = reply
            if float(first) >= 0:
                due.append(float(first))
            claimed += [(queue, m) for m in members]
        return claimed, (min(due) if due else None)

    def unclaim(self, claimed: Sequence[tuple[str, bytes]]) -> None:
        """Remove published delayed messages."""
        if not claimed:
            return
        pipe = self.client.pipeline(transaction=False)
        for queue, member in claimed:
            pipe.zrem(self.keys.delayed(queue), member)
        pipe.execute()

    def park(self, consumer: str, items: Iterable[tuple[str, str, bytes, float]]) -> None:
        """Add the parked copies ``(queue, message id, member, due)`` of ``consumer`` to the
        delayed sets, and note them under the consumer for :meth:`renew_parked`."""
        pipe = self.client.pipeline(transaction=False)
        key = self.keys.parked(consumer)
        for queue, message_id, member, due in items:
            pipe.zadd(self.keys.delayed(queue), {member: due})
            pipe.hset(key, message_id, queue.encode() + b"\n" + member)
        pipe.expire(key, PARKED_TTL)
        pipe.execute()

    def forget_parked(self, consumer: str, message_ids: Sequence[str]) -> None:
        """Stop renewing ``consumer``'s parked copies ``message_ids`` (they are finished,
        or given back to be published at once)."""
        if message_ids:
            self.client.hdel(self.keys.parked(consumer), *message_ids)

    def renew_parked(self, consumers: Sequence[str], due: float) -> int:
        """Move the due time of every copy parked by ``consumers`` to ``due`` (never
        adding one that is gone: published again, or finished); return how many."""
        pipe = self.client.pipeline(transaction=False)
        for consumer in consumers:
            pipe.hgetall(self.keys.parked(consumer))
        noted: list[tuple[str, bytes, str, bytes]] = []
        for consumer, rows in zip(consumers, pipe.execute(), strict=True):
            for message_id, value in rows.items():
                queue, _, member = value.partition(b"\n")
                noted.append((consumer, message_id, queue.decode(), member))
        if not noted:
            return 0
        for _, _, queue, member in noted:
            pipe.zadd(self.keys.delayed(queue), {member: due}, xx=True, ch=True)
        for consumer in consumers:
            pipe.expire(self.keys.parked(consumer), PARKED_TTL)
        kept = pipe.execute()[: len(noted)]
        for (consumer, message_id, _, _), ok in zip(noted, kept, strict=True):
            if not ok:
                pipe.hdel(self.keys.parked(consumer), message_id)
        pipe.execute()
        return sum(1 for ok in kept if ok)

    def extend(self, items: Sequence[tuple[str, bytes]], due: float) -> list[bool]:
        """Move the due time of delayed ``(queue, member)`` messages (parked long tasks)
        to ``due``; False for those no longer there (published after their lease ran
        out)."""
        pipe = self.client.pipeline(transaction=False)
        for queue, member in items:
            pipe.zadd(self.keys.delayed(queue), {member: due}, xx=True, ch=True)
        return [bool(n) for n in pipe.execute()]

    def remove(self, items: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Delete delayed ``(queue, member)`` messages; False for those already gone."""
        pipe = self.client.pipeline(transaction=False)
        for queue, member in items:
            pipe.zrem(self.keys.delayed(queue), member)
        return [bool(n) for n in pipe.execute()]

    def delayed_stats(self, queues: Sequence[str]) -> list[tuple[int, float | None, int]]:
        """``(delayed count, first due time, dead letters)`` of each of ``queues``."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(self.keys.delayed(queue))
            pipe.zrange(self.keys.delayed(queue), 0, 0, withscores=True)
            pipe.xlen(self.keys.dead(queue))
        replies = pipe.execute()
        out = []
        for i in range(len(queues)):
            count, first, dead = replies[3 * i : 3 * i + 3]
            out.append((int(count), float(first[0][1]) if first else None, int(dead)))
        return out

    def purge_delayed(self, queue: str) -> int:
        """Delete the delayed messages of ``queue``; return how many."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zcard(self.keys.delayed(queue))
        pipe.delete(self.keys.delayed(queue))
        count, _ = pipe.execute()
        return int(count)

    # -- dead letters, starts, unique locks, known queues ----------------------------------
    def add_dead(
        self,
        queue: str,
        body: bytes,
        reason: str,
        task: str,
        task_id: str,
        worker: str,
        traceback: str,
    ) -> int:
        """Add a dead letter (trimming the store to its bounds); return how many of the
        oldest were trimmed."""
        _, trimmed = self._scripts["dead_letter"](
            keys=[self.keys.dead(queue), self.keys.dead_bytes(queue)],
            args=[
                "",
                "",
                body,
                reason,
                task,
                task_id,
                queue,
                f"{time.time():.3f}",
                MAX_DEAD_LETTERS,
                worker,
                traceback,
                self.dead_letter_max_bytes,
            ],
        )
        return int(trimmed)

    def note_start(self, queue: str, message_id: str) -> int:
        """Count a start of the redelivered message ``message_id``; return the count."""
        return int(
            self._scripts["note_start"](
                keys=[self.keys.starts(queue, message_id)], args=[STARTS_TTL]
            )
        )

    def take_unique(self, key: str, task_id: str, ttl: int) -> str | None:
        """Take the unique lock ``key`` for ``task_id``; None if taken, else the id of
        the task holding it."""
        name = self.keys.unique(key)
        for _ in range(3):
            if self.client.set(name, task_id, nx=True, ex=max(1, int(ttl))):
                return None
            owner = self.client.get(name)
            if owner is not None:
                return owner.decode() if isinstance(owner, bytes) else str(owner)
        return None

    def release_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` still holds it."""
        self._scripts["release_unique"](keys=[self.keys.unique(key)], args=[task_id])

    def add_queues(self, queues: Sequence[str]) -> None:
        """Record queues a worker consumes (read by ``known_queues`` and the dead-letter
        commands)."""
        if queues:
            self.client.sadd(self.keys.queues(), *queues)

    def known_queues(self) -> set[str]:
        """The queues a worker ever consumed."""
        members: set[bytes] = self.client.smembers(self.keys.queues())  # type: ignore[assignment]
        return {q.decode() for q in members}

    def run(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        """Raw commands in one round trip (a fetch's piggyback); raise the first error."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return pipe.execute()
