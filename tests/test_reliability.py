"""The delivery guarantees of SPEC §5, with real processes, real signals and real Redis."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flask_taskq import BrokerConnectionError
from tests.apps.basic import add, context_probe, mark
from tests.conftest import wait_until

FAST_LEASES = {"TASKQ_VISIBILITY_TIMEOUT": "1.5"}


def runs(r, token):
    return int(r.hget("test:runs", token) or 0)


def started(r, token):
    return int(r.hget("test:started", token) or 0)


def test_sigkill_mid_task_redelivers_and_completes_once(app, start_worker, r):
    first = start_worker("-P", "solo", env=FAST_LEASES)
    with app.app_context():
        res = mark.delay("crash", seconds=2.0)
    wait_until(lambda: started(r, "crash") == 1)
    first.kill_group()
    assert runs(r, "crash") == 0
    start_worker("-P", "solo", env=FAST_LEASES)
    with app.app_context():
        assert res.get(timeout=20) == "crash"
    assert started(r, "crash") == 2
    assert runs(r, "crash") == 1


def test_prefork_sigkill_of_whole_worker_loses_nothing(app, start_worker, r):
    first = start_worker("-P", "prefork", "-c", "2", env=FAST_LEASES)
    with app.app_context():
        for i in range(40):
            mark.delay(f"t{i}", seconds=0.05)
    wait_until(lambda: r.hlen("test:runs") >= 5)
    first.kill_group()
    start_worker("-P", "prefork", "-c", "2", env=FAST_LEASES)
    wait_until(lambda: r.hlen("test:runs") == 40, timeout=30)
    assert all(runs(r, f"t{i}") >= 1 for i in range(40))


def test_long_task_beside_a_live_worker_runs_once(app, start_worker, r):
    """A task running 5x the visibility timeout keeps its lease while its worker lives."""
    env = {"TASKQ_VISIBILITY_TIMEOUT": "1"}
    busy = start_worker("-P", "solo", env=env)
    with app.app_context():
        res = mark.delay("long", seconds=5.0)
    wait_until(lambda: started(r, "long") == 1)
    idle = start_worker("-P", "solo", env=env)
    with app.app_context():
        assert res.get(timeout=20) == "long"
        assert add.delay(1, 1).get(timeout=10) == 2  # the idle worker was really consuming
    assert started(r, "long") == 1
    assert runs(r, "long") == 1
    assert "Took over" not in idle.log + busy.log


def test_sigterm_is_graceful(app, start_worker, r):
    with app.app_context():
        add.delay(1, 1)  # fetched alone (runtime unknown); once measured, fetches batch up
        mark.delay("running", seconds=1.5)
        for i in range(7):
            mark.delay(f"queued{i}")
    worker = start_worker("-P", "solo", "--prefetch", "8")
    wait_until(lambda: started(r, "running") == 1)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert runs(r, "running") == 1  # the running task finished
    assert "Returned" in worker.log  # prefetched tasks went back at once...
    with app.app_context():
        assert app.extensions["taskq"].broker.queue_length("default") == 7
    start_worker("-P", "solo")  # ...and run exactly once on the next worker
    wait_until(lambda: r.hlen("test:runs") == 8)
    assert all(runs(r, f"queued{i}") == 1 for i in range(7))
    assert r.hlen("test:started") == 8 and started(r, "running") == 1


def test_sigterm_on_prefork_supervisor(app, start_worker, r):
    worker = start_worker("-P", "prefork", "-c", "2")
    with app.app_context():
        mark.delay("a", seconds=1.0)
        mark.delay("b", seconds=1.0)
    wait_until(lambda: started(r, "a") + started(r, "b") == 2)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert runs(r, "a") == runs(r, "b") == 1


def test_second_signal_exits_at_once(app, start_worker, r):
    worker = start_worker("-P", "solo", env=FAST_LEASES)
    with app.app_context():
        res = mark.delay("slow", seconds=30)
    wait_until(lambda: started(r, "slow") == 1)
    worker.signal(signal.SIGTERM)
    worker.wait_for_log("Stopping")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=10) != 0
    assert runs(r, "slow") == 0
    # the interrupted task is still in Redis and comes back within the visibility timeout
    r.hdel("test:started", "slow")
    start_worker("-P", "solo", env=FAST_LEASES)
    wait_until(lambda: started(r, "slow") == 1, timeout=20)
    assert res.state in ("PENDING", "STARTED")  # running again, not finished


def test_shutdown_timeout_bounds_the_grace_period(app, start_worker, r):
    worker = start_worker("-P", "solo", "--shutdown-timeout", "0.5")
    with app.app_context():
        mark.delay("stuck", seconds=60)
    wait_until(lambda: started(r, "stuck") == 1)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 1
    assert runs(r, "stuck") == 0


def test_500_tasks_over_two_pools_each_run_once(app, start_worker, r):
    start_worker("-P", "prefork", "-c", "2")
    start_worker("-P", "threads", "-c", "4")
    with app.app_context():
        for i in range(500):
            mark.delay(f"t{i}")
    wait_until(lambda: r.hlen("test:runs") == 500, timeout=60)
    counts = r.hgetall("test:runs")
    assert set(counts.values()) == {"1"}
    assert r.hlen("test:started") == 500


@pytest.fixture
def app_on_own_redis(own_redis, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", own_redis.url)
    from tests.apps.basic import create_app

    app = create_app()
    app.config["TASKQ_ENQUEUE_TIMEOUT"] = 1.0
    return app


def test_broker_down_raises_broker_connection_error_in_bounded_time(app_on_own_redis, own_redis):
    own_redis.stop()
    with app_on_own_redis.app_context():
        begin = time.monotonic()
        with pytest.raises(BrokerConnectionError, match="cannot reach the broker"):
            add.delay(1, 2)
        assert time.monotonic() - begin < 10


def test_redis_restart_under_worker_and_app(app_on_own_redis, own_redis, start_worker):
    app = app_on_own_redis
    worker = start_worker("-P", "solo", broker_url=own_redis.url)
    with app.app_context():
        assert add.delay(1, 2).get(timeout=10) == 3
        own_redis.stop()
        with pytest.raises(BrokerConnectionError):
            add.delay(1, 2)
        worker.wait_for_log("Redis unreachable")
        own_redis.start()
        # both the app's client and the worker recover by themselves
        assert add.delay(2, 3).get(timeout=20) == 5
    assert worker.proc.poll() is None


def test_renewing_a_lease_is_not_a_new_delivery(app, start_worker, r):
    """A task held through many lease renewals, then crashed, is run again, not parked
    as poison (renewals must not count as deliveries)."""
    env = {"TASKQ_VISIBILITY_TIMEOUT": "0.6"}
    first = start_worker("-P", "solo", env=env)
    with app.app_context():
        res = mark.delay("renewed", seconds=3.0)
    wait_until(lambda: started(r, "renewed") == 1)
    time.sleep(2.0)  # let the keeper renew the lease ~10 times before the crash
    first.kill_group()
    assert "Lease keeper error" not in first.log
    start_worker("-P", "solo", env=env)
    with app.app_context():
        assert res.get(timeout=20) == "renewed"
    assert r.xlen("taskq:{default}:dead") == 0


def test_ctrl_c_to_the_process_group_is_graceful_in_prefork(app, start_worker, r):
    worker = start_worker("-P", "prefork", "-c", "2")
    with app.app_context():
        mark.delay("a", seconds=1.0)
        mark.delay("b", seconds=1.0)
    wait_until(lambda: started(r, "a") + started(r, "b") == 2)
    os.killpg(worker.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert worker.wait(timeout=20) == 0
    assert runs(r, "a") == runs(r, "b") == 1


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_children_stop_when_their_supervisor_is_killed(app, start_worker):
    worker = start_worker("-P", "prefork", "-c", "2")
    with app.app_context():
        pids = {context_probe.delay().get(timeout=10)["pid"] for _ in range(10)}
    worker.proc.kill()  # SIGKILL the supervisor alone
    worker.proc.wait()
    wait_until(
        lambda: not any(_alive(pid) for pid in pids),
        timeout=15,
        message="orphaned children to exit",
    )
