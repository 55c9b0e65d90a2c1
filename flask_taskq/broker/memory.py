"""An in-process broker (``memory://``) for local development and users' tests.

Messages live in this process only and vanish with it: never use it in production.
The :class:`~flask_taskq.TaskQueue` runs tasks sent to it on background threads of the
same process, through the same worker code as ``flask taskq worker``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import DecodeError
from ..keys import DEFAULT_PRIORITY, PRIORITIES
from ..message import Message
from ..serializer import JSONSerializer, Serializer
from .base import Delivery, QueueStats

if TYPE_CHECKING:
    from ..store.memory import MemoryStore

#: In a worker's queue list, "every queue" (the in-process worker of ``memory://``).
ANY_QUEUE = "*"


class MemoryBroker:
    """Broker whose queues are deques in this process."""

    url = "memory://"
    #: Nothing here can be unreachable.
    errors: tuple[type[BaseException], ...] = ()
    connection_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, **_: object) -> None:
        self._ready: dict[tuple[str, int], deque[Delivery]] = defaultdict(deque)
        self._leased: dict[str, tuple[str, Delivery, float]] = {}
        self._ids = itertools.count(1)
        self._delayed: list[tuple[float, str, Delivery]] = []
        self._cond = threading.Condition()
        self._unique: dict[str, tuple[str, float]] = {}
        self._starts: dict[str, int] = {}
        self.dead: list[dict[str, object]] = []
        self._known: set[str] = set()
        self._store: MemoryStore | None = None

    def maybe_sent(self, exc: BaseException) -> bool:
        """Never: a message is either in the queue or not."""
        return False

    def resend_unsafe(self, exc: BaseException) -> bool:
        """Never (see :meth:`maybe_sent`)."""
        return False

    def ping(self) -> None:
        """Always reachable."""

    def enqueue(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self.enqueue_many([(queue, priority, body, eta)])

    def enqueue_many(
        self, items: Iterable[tuple[str, int, bytes, float | None]], *, timeout: float | None = None
    ) -> None:
        with self._cond:
            for queue, priority, body, eta in items:
                self._known.add(queue)
                delivery = Delivery(queue, priority, str(next(self._ids)), body)
                if eta is not None and eta > time.time():
                    heapq.heappush(self._delayed, (eta, delivery.entry_id, delivery))
                else:
                    self._ready[(queue, priority)].append(delivery)
            self._cond.notify_all()

    def promote(self, queues: Sequence[str], limit: int = 1000) -> float | None:
        with self._cond:
            now = time.time()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, d = heapq.heappop(self._delayed)
                self._ready[(d.queue, d.priority)].append(d)
            return self._delayed[0][0] if self._delayed else None

    def _names(self, queues: Sequence[str]) -> Sequence[str]:
        if ANY_QUEUE in queues:
            return sorted({q for q, _ in self._ready})
        return queues

    def _take(self, consumer: str, queues: Sequence[str], count: int) -> list[Delivery]:
        out: list[Delivery] = []
        names = self._names(queues)
        for p in PRIORITIES:
            for q in names:
                ready = self._ready.get((q, p))
                while ready and len(out) < count:
                    d = ready.popleft()
                    self._leased[d.entry_id] = (consumer, d, time.monotonic())
                    out.append(d)
        return out

    def fetch(
        self, consumer: str, queues: Sequence[str], count: int, timeout: float, then: Any = None
    ) -> list[Delivery]:
        with self._cond:
            out = self._take(consumer, queues, count)
            if not out and timeout > 0:
                self._cond.wait(timeout)
                out = self._take(consumer, queues, count)
            return out

    def ensure_groups(self, queues: Sequence[str]) -> None:
        with self._cond:
            self._known.update(q for q in queues if q != ANY_QUEUE)

    def _taken_over(self, consumer: str, delivery: Delivery) -> bool:
        """True if another consumer holds ``delivery`` now (it reclaimed the lease);
        else drop ``consumer``'s lease of it, if any."""
        held = self._leased.get(delivery.entry_id)
        if held is not None and held[0] != consumer:
            return True
        self._leased.pop(delivery.entry_id, None)
        return False

    def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        with self._cond:
            return [d for d in deliveries if self._taken_over(consumer, d)]

    def requeue(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        skipped: list[Delivery] = []
        with self._cond:
            for d in deliveries:
                held = self._leased.get(d.entry_id)
                if held is not None and held[0] == consumer:
                    del self._leased[d.entry_id]
                    self._ready[(d.queue, d.priority)].append(d)
                else:
                    skipped.append(d)
            self._cond.notify_all()
        return skipped

    def renew(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        lost: list[Delivery] = []
        now = time.monotonic()
        with self._cond:
            for d in deliveries:
                held = self._leased.get(d.entry_id)
                if held is None or held[0] != consumer:
                    lost.append(d)
                else:
                    self._leased[d.entry_id] = (consumer, d, now)
        return lost

    def reclaim(
        self, consumer: str, queues: Sequence[str], min_idle: float, count: int
    ) -> list[Delivery]:
        out: list[Delivery] = []
        now = time.monotonic()
        with self._cond:
            for entry_id, (_, d, renewed) in list(self._leased.items()):
                if len(out) >= count:
                    break
                if (d.queue in queues or ANY_QUEUE in queues) and now - renewed >= min_idle:
                    d.deliveries += 1
                    self._leased[entry_id] = (consumer, d, now)
                    out.append(d)
        return out

    def enqueue_unique(
        self,
        queue: str,
        priority: int,
        body: bytes,
        eta: float | None,
        key: str,
        task_id: str,
        ttl: int,
        *,
        timeout: float | None = None,
    ) -> str:
        with self._cond:
            owner = self._unique.get(key)
            if owner is not None and owner[1] > time.monotonic():
                return owner[0]
            self._unique[key] = (task_id, time.monotonic() + ttl)
            self.enqueue_many([(queue, priority, body, eta)])
            return task_id

    def note_start(self, delivery: Delivery) -> int:
        with self._cond:
            self._starts[delivery.entry_id] = self._starts.get(delivery.entry_id, 0) + 1
            return self._starts[delivery.entry_id]

    def release_unique(self, key: str, task_id: str) -> None:
        with self._cond:
            if self._unique.get(key, ("",))[0] == task_id:
                del self._unique[key]

    def reschedule(
        self, consumer: str, items: Sequence[tuple[Delivery, bytes, float]]
    ) -> list[Delivery]:
        skipped: list[Delivery] = []
        with self._cond:
            for d, body, due in items:
                if self._taken_over(consumer, d):
                    skipped.append(d)
                else:
                    self.enqueue_many([(d.queue, d.priority, body, due)])
        return skipped

    def dead_letter(
        self,
        consumer: str,
        delivery: Delivery,
        reason: str,
        task: str,
        task_id: str,
        traceback: str = "",
    ) -> int:
        """Move the delivery to :attr:`dead` (kept whole: nothing is trimmed here)."""
        with self._cond:
            if self._taken_over(consumer, delivery):
                return 0
            now = time.time()
            self.dead.append(
                {
                    "reason": reason,
                    "task": task,
                    "id": task_id,
                    "queue": delivery.queue,
                    "time": f"{now:.3f}",
                    "body": delivery.body,
                    "worker": consumer,
                    "traceback": traceback,
                    "entry_id": f"{int(now * 1000)}-{next(self._ids)}",
                }
            )
        return 0

    def dead_letters(
        self, queue: str, count: int = 100, before: str | None = None
    ) -> list[dict[str, object]]:
        """The newest ``count`` dead letters of ``queue`` (older than entry ``before``),
        newest first, shaped as :meth:`RedisBroker.dead_letters` returns them."""
        with self._cond:
            rows = [dict(e) for e in reversed(self.dead) if e["queue"] == queue]
        if before is not None:
            ids = [r["entry_id"] for r in rows]
            rows = rows[ids.index(before) + 1 :] if before in ids else []
        return rows[:count]

    def dead_letter_get(self, queue: str, entry_id: str) -> dict[str, object] | None:
        with self._cond:
            for entry in self.dead:
                if entry["queue"] == queue and entry["entry_id"] == entry_id:
                    return dict(entry)
        return None

    def dead_letter_count(self, queue: str) -> int:
        with self._cond:
            return sum(1 for e in self.dead if e["queue"] == queue)

    def dead_letter_queues(self) -> list[str]:
        with self._cond:
            return sorted({str(e["queue"]) for e in self.dead})

    def requeue_dead(
        self, queue: str, entry_ids: Sequence[str], serializer: Serializer | None = None
    ) -> int:
        serializer = serializer or JSONSerializer()
        wanted = set(entry_ids)
        with self._cond:
            moving = [e for e in self.dead if e["queue"] == queue and e["entry_id"] in wanted]
            self.dead[:] = [e for e in self.dead if not any(e is m for m in moving)]
            items: list[tuple[str, int, bytes, float | None]] = []
            for entry in moving:
                body = entry["body"]
                assert isinstance(body, bytes)
                try:
                    priority = Message.from_bytes(body, serializer).priority
                except DecodeError:
                    priority = DEFAULT_PRIORITY
                if not 0 <= priority <= 9:
                    priority = DEFAULT_PRIORITY
                items.append((queue, priority, body, None))
            self.enqueue_many(items)
        return len(moving)

    def purge_dead(self, queue: str) -> int:
        with self._cond:
            kept = [e for e in self.dead if e["queue"] != queue]
            purged = len(self.dead) - len(kept)
            self.dead[:] = kept
        return purged

    def delete_dead(self, queue: str, entry_ids: Sequence[str]) -> int:
        wanted = set(entry_ids)
        with self._cond:
            kept = [e for e in self.dead if e["queue"] != queue or e["entry_id"] not in wanted]
            deleted = len(self.dead) - len(kept)
            self.dead[:] = kept
        return deleted

    def forget_consumer(self, consumer: str, queues: Sequence[str]) -> None:
        pass

    def renew_consumers(self, consumers: Sequence[str], queues: Sequence[str]) -> int:
        return 0  # consumers run in this process: nothing to renew for another one

    def queue_length(self, queue: str) -> int:
        return sum(len(self._ready.get((queue, p), ())) for p in PRIORITIES)

    def known_queues(self) -> set[str]:
        """Every queue a message was sent to or a worker consumed."""
        with self._cond:
            return set(self._known)

    def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats]:
        with self._cond:
            stats = {}
            for queue in queues:
                due = [eta for eta, _, d in self._delayed if d.queue == queue]
                stats[queue] = QueueStats(
                    ready=self.queue_length(queue),
                    leased=sum(1 for _, d, _ in self._leased.values() if d.queue == queue),
                    delayed=len(due),
                    dead=sum(1 for e in self.dead if e["queue"] == queue),
                    next_due=min(due, default=None),
                )
            return stats

    def purge(self, queue: str) -> int:
        with self._cond:
            n = self.queue_length(queue)
            for p in PRIORITIES:
                self._ready.pop((queue, p), None)
            return n

    def store(self) -> MemoryStore:
        """The memory store of this broker, made once and shared by every caller."""
        if self._store is None:
            from ..store.memory import MemoryStore

            self._store = MemoryStore()
        return self._store

    def set_reply_timeout(self, seconds: float) -> None:
        """Nothing to bound: no call waits for a server."""

    def after_fork(self) -> None:
        """Nothing to drop: a forked child gets a copy of the queues, not a connection."""

    def close(self) -> None:
        pass
