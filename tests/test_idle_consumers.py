"""Consumers left in the groups by killed workers (``TASKQ_IDLE_CONSUMER_TTL``): a worker's
reclaim deletes those that hold nothing and have not read for that long, and keeps one
that holds an entry (deleting it would drop the entry), with a real Redis and real
worker processes."""

from __future__ import annotations

import pytest

from flask_taskq.broker.redis import RedisBroker
from flask_taskq.keys import GROUP
from tests.apps.basic import add
from tests.conftest import wait_until


def consumers(r, stream: str) -> dict[str, dict]:
    return {c["name"]: c for c in r.xinfo_consumers(stream, GROUP)}


def idle_for(r, stream: str, names: set[str], ms: int) -> bool:
    found = consumers(r, stream)
    return all(name in found and found[name]["idle"] >= ms for name in names)


@pytest.fixture
def stream(redis_url, r) -> str:
    broker = RedisBroker(redis_url)
    name = broker.keys.stream("default", 5)
    broker.ensure_groups(["default"])
    r.xadd(name, {"m": "held"})
    r.xreadgroup(GROUP, "holder", {name: ">"}, count=1)  # holds an entry
    r.xadd(name, {"m": "done"})
    [[_, [(entry_id, _)]]] = r.xreadgroup(GROUP, "gone", {name: ">"}, count=1)
    r.xack(name, GROUP, entry_id)  # read once, holds nothing now
    broker.close()
    return name


def test_reclaim_deletes_idle_consumers_that_hold_nothing(redis_url, r, stream):
    broker = RedisBroker(redis_url, idle_consumer_ttl=0.2)
    wait_until(lambda: idle_for(r, stream, {"holder", "gone"}, 200), message="both idle")
    assert broker.reclaim("me", ["default"], min_idle=60, count=10) == []
    left = consumers(r, stream)
    assert "gone" not in left
    assert left["holder"]["pending"] == 1
    assert r.xpending(stream, GROUP)["pending"] == 1


def test_the_clean_up_runs_at_most_once_a_minute(redis_url, r, stream):
    broker = RedisBroker(redis_url, idle_consumer_ttl=0.2)
    broker.reclaim("me", ["default"], min_idle=60, count=10)  # too early for "gone"
    wait_until(lambda: idle_for(r, stream, {"gone"}, 200), message="gone idle")
    broker.reclaim("me", ["default"], min_idle=60, count=10)
    assert "gone" in consumers(r, stream)


def test_no_clean_up_with_a_ttl_of_zero(redis_url, r, stream):
    broker = RedisBroker(redis_url, idle_consumer_ttl=0)
    wait_until(lambda: idle_for(r, stream, {"gone"}, 50), message="gone idle")
    broker.reclaim("me", ["default"], min_idle=60, count=10)
    assert set(consumers(r, stream)) == {"holder", "gone"}


def test_a_worker_deletes_the_consumer_a_killed_worker_left(app, start_worker, r):
    stream = "taskq:{default}:p5"
    first = start_worker("-P", "solo")
    with app.app_context():
        assert add.delay(1, 1).get(timeout=10) == 2
    [dead] = consumers(r, stream)
    first.kill_group()  # SIGKILL: no chance to leave the group
    wait_until(lambda: idle_for(r, stream, {dead}, 1000), message="the dead consumer idle")
    second = start_worker("-P", "solo", env={"TASKQ_IDLE_CONSUMER_TTL": "1"})
    second.wait_for_log("Deleted 1 consumer(s)")
    assert dead not in consumers(r, stream)
    with app.app_context():
        assert add.delay(2, 2).get(timeout=10) == 4  # the new worker reads on
    assert dead not in consumers(r, stream)
