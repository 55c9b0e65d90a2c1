"""Rate limits, revocation, monitoring and paused queues through the store, on
``memory://`` and on a real redis-server with a worker process (the ``transport``
fixture)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis
from flask import Flask

from flask_taskq import states
from flask_taskq.keys import Keys
from flask_taskq.monitor import Monitor, failure_key
from flask_taskq.ratelimit import RateLimiter
from flask_taskq.store.memory import MemoryStore
from flask_taskq.store.redis import RedisStore
from flask_taskq.store.replay import Start
from tests.apps.store_app import boom, create_app, echo, limited
from tests.conftest import Transport, wait_until

APP = "tests.apps.store_app:create_app"


@pytest.fixture
def app(transport: Transport) -> Flask:
    """The app on ``transport``, with a worker running its tasks."""
    transport.worker(app=APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    return create_app(**transport.config())


def _store(app: Flask) -> Any:
    return app.extensions["taskq"].store


def test_a_rate_limited_task_runs_and_its_bucket_is_in_the_store(app: Flask) -> None:
    with app.app_context():
        results = [limited.delay(i) for i in range(5)]
        assert [r.get(timeout=20) for r in results] == list(range(5))
    bucket = RateLimiter(_store(app).rate_limits).bucket(limited.name)
    assert bucket is not None
    assert bucket["tokens"] <= 2  # the burst of 2/s


def test_an_override_set_in_the_store_takes_effect(app: Flask) -> None:
    store = _store(app)
    limiter = RateLimiter(store.rate_limits)
    assert limiter.bucket(echo.name) is None  # echo declares no limit
    store.rate_limits.set_override(echo.name, "1000/s")
    assert limiter.overrides() == {echo.name: "1000/s"}

    def limited_now() -> bool:
        with app.app_context():
            assert echo.delay(1).get(timeout=10) == 1
        return limiter.bucket(echo.name) is not None

    wait_until(limited_now, timeout=15, message="a bucket for echo")
    assert limiter.set_rate(echo.name, "off") is None
    assert store.rate_limits.overrides() == {}


def test_a_queued_task_revoked_by_id_does_not_run(app: Flask) -> None:
    with app.app_context():
        result = echo.apply_async((1,), countdown=1.5)
        result.revoke()
        wait_until(lambda: result.state == states.REVOKED, timeout=20, message="REVOKED")
        assert echo.delay(2).get(timeout=10) == 2  # the worker goes on


def test_the_monitor_shows_the_worker_its_counters_and_failures(app: Flask) -> None:
    mon = Monitor(_store(app).monitor)
    with app.app_context():
        assert [echo.delay(i).get(timeout=10) for i in range(3)] == [0, 1, 2]
        failed = boom.delay("x")
        with pytest.raises(Exception, match="x"):
            failed.get(timeout=10)

    def processed() -> int:
        return sum(
            n
            for (kind, _, task), n in mon.totals(5).items()
            if (kind, task) == ("processed", echo.name)
        )

    wait_until(lambda: processed() >= 3, timeout=15, message="echo's counters")
    processes = mon.processes()
    assert processes and all(p["heartbeat"] > 0 for p in processes)
    assert sum(p.get("processed", 0) for p in processes) >= 3
    wait_until(
        lambda: failed.id in [f["id"] for f in mon.failures()],
        timeout=15,
        message="the failure in the recent failures",
    )
    record = mon.failure(failed.id)
    assert record is not None and record["task"] == boom.name
    assert mon.failure_count() == 1


def test_pause_then_resume(app: Flask) -> None:
    mon = Monitor(_store(app).monitor)
    with app.app_context():
        echo.delay(0).get(timeout=10)  # a worker is up and beating
    mon.pause(["default"])
    assert mon.paused() == {"default"}
    wait_until(
        lambda: any("default" in p.get("paused", ()) for p in mon.processes()),
        timeout=15,
        message="a worker that knows the queue is paused",
    )
    with app.app_context():
        held = echo.delay(1)
        mon.resume(["default"])
        assert mon.paused() == set()
        assert held.get(timeout=15) == 1


# -- the store concerns themselves, same answers from both implementations ---------------
@pytest.fixture
def store(transport: Transport) -> Any:
    """A fresh store on ``transport``."""
    if transport.is_memory:
        return MemoryStore()
    return RedisStore(redis.Redis.from_url(transport.store_url), Keys())


def test_buckets_grant_the_burst_then_book_distinct_slots(store: Any) -> None:
    limits = store.rate_limits
    assert [limits.acquire("t", 2.0, 2.0, None) for _ in range(2)] == [0.0, 0.0]
    assert limits.acquire("t", 2.0, 2.0, None) > 0  # a refusal without an id takes nothing
    waits = [limits.acquire("t", 2.0, 2.0, task_id) for task_id in ("a", "b")]
    assert 0 < waits[0] < waits[1]
    assert 0 < limits.acquire("t", 2.0, 2.0, "a") <= waits[0]  # a's slot, not a new one
    bucket = limits.bucket("t")
    assert bucket is not None and bucket["tokens"] < 0  # in debt for the booked slots
    assert limits.bucket("unused") is None


def test_revocations_are_read_from_the_newest_score_seen(store: Any) -> None:
    revocations = store.revocations
    first = revocations.revoke(["a", "b"], False, 60.0)
    second = revocations.revoke(["c"], True, 60.0)
    assert second > first
    everything = revocations.since((0.0, 0.0), 0.0)
    assert sorted(t for t, _ in everything.revoked) == ["a", "b", "c"]
    assert [t for t, _ in everything.terminate] == ["c"]
    newer = revocations.since((second, second), 0.0)
    assert [t for t, _ in newer.revoked] == ["c"]
    assert revocations.since((0.0, 0.0), second + 1).revoked == []


def test_replay_marks(store: Any) -> None:
    replay = store.replay
    start = Start("t1", 0, "default", 5, "1-0")
    assert replay.start(start, 60, True) is None
    assert replay.start(start, 60, False) is None  # the same delivery again: a crash
    assert replay.start(start._replace(entry_id="2-0"), 60, False) is not None
    assert replay.start(start._replace(attempt=1, entry_id="3-0"), 60, False) is None
    assert replay.start(start, 60, False) is not None  # an earlier attempt
    replay.forget_starts([start._replace(attempt=1, entry_id="9-9")])  # not its record
    assert replay.start(start._replace(attempt=1, entry_id="4-0"), 60, False) is not None
    replay.forget_starts([start._replace(attempt=1, entry_id="3-0")])
    assert replay.start(start._replace(attempt=1, entry_id="4-0"), 60, False) is None
    replay.forget(["t1"])
    assert replay.start(start, 60, False) is None


def test_failures_are_taken_once(store: Any) -> None:
    mon = Monitor(store.monitor)
    counters: Counter[tuple[str, ...]] = Counter()
    counters[failure_key("q", "t", "id1", b"body")] = 1000.0
    counters[("processed", "q", "t")] = 2
    assert mon.beat("p1", {"worker": "w", "process": "p1"}, counters) == set()
    assert [p["process"] for p in mon.processes()] == ["p1"]
    assert mon.totals(1)[("processed", "q", "t")] == 2
    record = mon.take_failure("id1")
    assert record is not None and record["body"] == b"body"
    assert mon.take_failure("id1") is None
    mon.restore_failure(record)  # its retry could not be sent: kept again, once
    mon.restore_failure({**record, "body": b"other"})
    assert mon.failure("id1") == record and mon.failure_count() == 1
    assert mon.take_failure("id1") == record
    mon.leave("p1")
    assert mon.processes() == []
