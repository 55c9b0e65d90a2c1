"""The broker protocol as both brokers implement it: the members exist, and the memory
broker returns what the Redis broker returns (skipped deliveries, trimmed counts, queue
statistics)."""

from __future__ import annotations

import time
from unittest.mock import ANY

from flask_taskq.backend.base import ResultBackend
from flask_taskq.backend.memory import MemoryBackend
from flask_taskq.backend.redis import RedisBackend
from flask_taskq.broker import Broker, QueueStats
from flask_taskq.broker.memory import ANY_QUEUE, MemoryBroker
from flask_taskq.broker.redis import RedisBroker


def _members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_")}
    return names | set(getattr(protocol, "__annotations__", {}))


def test_both_brokers_and_backends_have_every_protocol_member() -> None:
    for cls in (MemoryBroker, RedisBroker):
        missing = {n for n in _members(Broker) if not hasattr(cls, n)}
        assert not missing, f"{cls.__name__} lacks {sorted(missing)}"
    for cls in (MemoryBackend, RedisBackend):
        missing = {n for n in _members(ResultBackend) if not hasattr(cls, n)}
        assert not missing, f"{cls.__name__} lacks {sorted(missing)}"


def test_memory_errors_are_empty_and_nothing_is_in_doubt() -> None:
    broker = MemoryBroker()
    assert broker.errors == broker.connection_errors == ()
    assert not broker.maybe_sent(TimeoutError()) and not broker.resend_unsafe(TimeoutError())
    broker.ping()


def test_memory_acks_only_what_the_consumer_holds() -> None:
    broker = MemoryBroker()
    broker.enqueue_many([("q", 5, b"a", None), ("q", 5, b"b", None), ("q", 5, b"c", None)])
    a, b, c = broker.fetch("one", ["q"], 3, 0)
    # "two" took the leases over (as reclaim does after "one" stalled).
    assert {d.entry_id for d in broker.reclaim("two", ["q"], 0, 3)} == {"1", "2", "3"}
    assert broker.ack("one", [a]) == [a]  # not its lease any more: skipped, still held
    assert broker.requeue("one", [b]) == [b]
    assert broker.reschedule("one", [(c, b"c2", time.time() + 60)]) == [c]
    assert broker.dead_letter("one", b, "why", "t", "id") == 0
    assert broker.dead_letter_count("q") == 0
    assert broker.queue_stats(["q"])["q"].leased == 3
    assert broker.ack("two", [a]) == []
    assert broker.reschedule("two", [(c, b"c2", time.time() + 60)]) == []
    assert broker.dead_letter("two", b, "why", "t", "id") == 0
    assert broker.dead_letter_count("q") == 1
    assert broker.queue_stats(["q"])["q"] == QueueStats(delayed=1, dead=1, next_due=ANY)


def test_memory_queue_stats_and_known_queues() -> None:
    broker = MemoryBroker()
    due = time.time() + 60
    broker.enqueue_many(
        [("q", 5, b"a", None), ("q", 9, b"b", None), ("q", 5, b"c", due), ("q", 5, b"d", due + 1)]
    )
    [held] = broker.fetch("one", ["q"], 1, 0)
    broker.ensure_groups(["idle", ANY_QUEUE])
    assert broker.known_queues() == {"q", "idle"}
    stats = broker.queue_stats(["q", "idle"])
    assert stats["q"] == QueueStats(ready=1, leased=1, delayed=2, dead=0, next_due=due)
    assert stats["q"].unfinished == 2
    assert stats["idle"] == QueueStats()
    broker.dead_letter("one", held, "why", "t", "id")
    [row] = broker.dead_letters("q")
    assert broker.queue_stats(["q"])["q"].dead == 1
    assert broker.delete_dead("q", ["nope"]) == 0
    assert broker.delete_dead("q", [str(row["entry_id"])]) == 1
    assert broker.dead_letter_count("q") == 0


def test_memory_backend_keeps_saved_groups_until_they_expire() -> None:
    backend = MemoryBackend()
    backend.save_group("g", b"[1]", 0)
    backend.save_group("h", b"[2]", 60)
    assert backend.restore_group("g") == b"[1]"
    assert backend.restore_group("h") == b"[2]"
    assert backend.restore_group("nope") is None
    backend._groups["h"] = (b"[2]", time.monotonic() - 1)
    assert backend.restore_group("h") is None
