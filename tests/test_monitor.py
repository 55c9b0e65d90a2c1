"""Worker heartbeats, counters and paused queues in Redis (flask_taskq.monitor)."""

from __future__ import annotations

import signal

import pytest

from flask_taskq.keys import Keys
from flask_taskq.monitor import Monitor
from flask_taskq.store.redis.monitor import RedisMonitorStore
from tests.apps.basic import add, mark
from tests.conftest import wait_until


@pytest.fixture
def monitor(redis_server, redis_url):
    return Monitor(RedisMonitorStore(redis_server.client(), Keys("taskq")))


def test_heartbeat_describes_the_worker(app, start_worker, monitor, r):
    worker = start_worker("-P", "threads", "-c", "3", "-n", "w1@test", "-Q", "default,other")
    [proc] = wait_until(monitor.processes, message="a heartbeat")
    assert proc["worker"] == "w1@test" and proc["pool"] == "threads"
    assert proc["concurrency"] == 3 and proc["queues"] == ["default", "other"]
    assert proc["pid"] == worker.proc.pid and proc["rss"] > 0
    with app.app_context():
        mark.delay("slow", seconds=3)
        wait_until(lambda: r.hget("test:started", "slow"))
    running = wait_until(
        lambda: monitor.processes()[0]["running"], message="the running task in the heartbeat"
    )
    assert running[0]["task"] == "tests.apps.basic.mark"
    assert running[0]["args"] == "'slow', seconds=3"


def test_counters_after_n_tasks(app, start_worker, monitor):
    start_worker("-P", "solo")
    with app.app_context():
        for res in [add.delay(i, i) for i in range(25)]:
            res.get(timeout=10)
    key = ("processed", "default", "tests.apps.basic.add")
    wait_until(lambda: monitor.totals(5).get(key) == 25, message="25 processed")
    assert monitor.processes()[0]["processed"] == 25


def test_prefork_children_each_beat(start_worker, monitor):
    start_worker("-P", "prefork", "-c", "2", "-n", "pf@test")
    procs = wait_until(lambda: len(monitor.processes()) == 2 and monitor.processes())
    assert {p["worker"] for p in procs} == {"pf@test"}
    assert len({p["pid"] for p in procs}) == 2


def test_a_stopped_worker_disappears(start_worker, monitor):
    worker = start_worker("-P", "solo")
    wait_until(monitor.processes)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert monitor.processes() == []


def test_paused_queue_is_not_fetched_until_resumed(app, start_worker, monitor, r):
    start_worker("-P", "solo")
    monitor.pause(["default"])
    seen = wait_until(
        lambda: [p["heartbeat"] for p in monitor.processes() if p["paused"] == ["default"]],
        message="the pause noticed",
    )
    # one heartbeat later (2 s) any fetch begun before the pause (1 s at most) is over
    wait_until(lambda: monitor.processes()[0]["heartbeat"] > seen[0])
    with app.app_context():
        res = mark.delay("held")
        with pytest.raises(TimeoutError):
            res.get(timeout=1.5)
        monitor.resume(["default"])
        assert res.get(timeout=10) == "held"
