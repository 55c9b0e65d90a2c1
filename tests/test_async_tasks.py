"""``async def`` tasks (issue 20 item 1) with real worker processes on a real redis-server:
they run on each worker process's event loop, many at once, beside sync tasks, with time
limits, revocation, retries, rate limits, eager mode and redelivery."""

from __future__ import annotations

import signal

import pytest

from flask_taskq import TaskRevokedError, TimeLimitExceeded, chain
from tests.apps import async_app
from tests.apps.async_app import (
    Flaky,
    add,
    auto,
    boom,
    double,
    flaky,
    hard_limited,
    limited,
    nap,
    outer,
    quick,
    sleeper,
    soft_limited,
    whoami,
)
from tests.conftest import wait_until

APP = "tests.apps.async_app:create_app"


@pytest.fixture
def aapp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.delenv("TASKQ_ALWAYS_EAGER", raising=False)
    return async_app.create_app()


def peak(r) -> int:
    """The most naps in flight at once, as the naps saw it."""
    return max(int(level) for level in r.lrange("aio:levels", 0, -1))


def test_result_round_trip_with_current_app_inside(aapp, start_worker):
    start_worker("-P", "solo", app=APP)
    with aapp.app_context():
        res = whoami.delay(3)
        assert res.get(timeout=10) == {
            "app": "async_app",
            "x": 3,
            "id": res.id,
            "marker": "from-the-app-config",
        }
        assert res.state == "SUCCESS"


def test_200_naps_on_one_process_are_in_flight_together(aapp, start_worker, r):
    """One process, one executor thread: more than 50 coroutines in flight at once (each
    recorded how many were when it started)."""
    start_worker("-P", "solo", app=APP)  # the default --async-concurrency, 100
    with aapp.app_context():
        results = [nap.delay(f"n{i}", 0.5) for i in range(200)]
        assert [res.get(timeout=60) for res in results] == [f"n{i}" for i in range(200)]
    assert 50 < peak(r) <= 100
    assert r.hlen("aio:done") == 200
    assert set(r.hvals("aio:done")) == {"1"}
    assert int(r.get("aio:inflight")) == 0


def test_async_concurrency_bounds_the_coroutines_in_flight(aapp, start_worker, r):
    worker = start_worker("-P", "solo", "--async-concurrency", "5", app=APP)
    assert "prefetch=auto async-concurrency=5" in worker.log
    with aapp.app_context():
        results = [nap.delay(f"b{i}", 0.2) for i in range(30)]
        assert [res.get(timeout=60) for res in results] == [f"b{i}" for i in range(30)]
    assert peak(r) == 5


def test_sync_and_async_tasks_share_a_queue_and_a_worker(aapp, start_worker, r):
    start_worker("-P", "threads", "-c", "2", app=APP)
    with aapp.app_context():
        sent = []
        for i in range(30):
            sent.append((add.delay(i, 1), i + 1))
            sent.append((nap.delay(f"m{i}", 0.05), f"m{i}"))
            sent.append((quick.delay(i), i))
        for res, expected in sent:
            assert res.get(timeout=30) == expected


def test_hard_time_limit_cancels_the_coroutine(aapp, start_worker, r):
    worker = start_worker("-P", "solo", app=APP)
    with aapp.app_context():
        res = hard_limited.delay("h", 30)
        with pytest.raises(TimeLimitExceeded, match="time_limit of 1s"):
            res.get(timeout=20)
        assert whoami.delay(1).get(timeout=10)["x"] == 1  # the process goes on
    assert r.hget("aio:cancelled", "h") == "1"  # its finally/except ran
    assert r.hget("aio:finished", "h") is None
    assert worker.proc.poll() is None
    assert "time_limit is enforced only by the prefork pool" not in worker.log


def test_hard_time_limit_in_a_prefork_child_cancels_without_killing_it(aapp, start_worker, r):
    worker = start_worker("-P", "prefork", "-c", "1", app=APP)
    with aapp.app_context():
        others = [nap.delay(f"p{i}", 2) for i in range(5)]  # in flight beside it
        res = hard_limited.delay("h", 30)
        with pytest.raises(TimeLimitExceeded, match="was cancelled"):
            res.get(timeout=20)
        assert [o.get(timeout=20) for o in others] == [f"p{i}" for i in range(5)]
    assert worker.log.count(" ready") == 1  # the child was not replaced
    assert "killing its process" not in worker.log


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork"])
def test_soft_time_limit_is_raised_inside_the_coroutine(aapp, start_worker, pool):
    start_worker("-P", pool, "-c", "1", app=APP)
    with aapp.app_context():
        assert soft_limited.delay("s", 30).get(timeout=20) == "cleaned up"


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_revoke_terminate_cancels_a_running_coroutine(aapp, start_worker, r, pool):
    worker = start_worker("-P", pool, "-c", "1", app=APP)
    with aapp.app_context():
        res = sleeper.delay("long", 30)
        wait_until(lambda: r.hget("aio:started", "long"), 15)
        res.revoke(terminate=True)
        with pytest.raises(TaskRevokedError, match="terminated"):
            res.get(timeout=10)
        assert add.delay(2, 2).get(timeout=10) == 4  # the worker goes on
    assert r.hget("aio:cancelled", "long") == "1"
    assert r.hget("aio:finished", "long") is None
    assert worker.proc.poll() is None


def test_retries_of_async_tasks(aapp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with aapp.app_context():
        assert flaky.delay("f", 2).get(timeout=20) == {"attempt": 3, "retries": 2}
        assert auto.delay("a", 2).get(timeout=20) == 3
    assert int(r.hget("aio:attempts", "f")) == 3
    assert int(r.hget("aio:attempts", "a")) == 3


def test_rate_limit_of_an_async_task(aapp, start_worker, r):
    """15 tasks at 5/s (burst 5): the last starts about 2 s after the first, and no second
    holds more than burst + rate starts, though 100 could be in flight."""
    start_worker("-P", "solo", app=APP)
    with aapp.app_context():
        results = [limited.delay(f"l{i}") for i in range(15)]
        assert [res.get(timeout=30) for res in results] == [f"l{i}" for i in range(15)]
    starts = sorted(float(t) for t in r.hvals("aio:limited_at"))
    assert len(starts) == 15
    assert starts[-1] - starts[0] >= 1.5
    for first in starts:
        assert sum(first <= s < first + 1.0 for s in starts) <= 10


def test_eager_mode_runs_the_coroutine_to_completion(redis_url, monkeypatch, r):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_ALWAYS_EAGER", "1")
    app = async_app.create_app()
    with app.app_context():
        res = whoami.delay(5)
        assert res.get(timeout=5) == {
            "app": "async_app",
            "x": 5,
            "id": res.id,
            "marker": "from-the-app-config",
        }
        assert flaky.delay("e", 1).get(timeout=5) == {"attempt": 2, "retries": 1}
    # from an async view, whose own event loop runs in the request's thread
    response = app.test_client().post("/fetch/9")
    assert response.status_code == 200, response.text
    assert response.json["value"]["x"] == 9
    assert response.json["value"]["id"] == response.json["id"]


def test_delay_from_an_async_view(aapp, start_worker):
    start_worker("-P", "solo", app=APP)
    response = aapp.test_client().post("/fetch/4")
    assert response.status_code == 200, response.text
    with aapp.app_context():
        value = whoami.AsyncResult(response.json["id"]).get(timeout=10)
    assert value["x"] == 4


def test_a_killed_workers_coroutines_are_delivered_again(aapp, start_worker, r):
    env = {"TASKQ_VISIBILITY_TIMEOUT": "2"}
    first = start_worker("-P", "solo", app=APP, env=env)
    with aapp.app_context():
        results = [sleeper.delay(f"k{i}", 3) for i in range(10)]
        wait_until(lambda: r.hlen("aio:started") == 10, 15, message="10 coroutines started")
        first.kill_group()
        assert r.hlen("aio:finished") == 0
        start_worker("-P", "solo", app=APP, env=env)
        assert [res.get(timeout=40) for res in results] == [f"k{i}" for i in range(10)]
    assert {int(n) for n in r.hvals("aio:attempts")} == {2}
    assert {int(n) for n in r.hvals("aio:finished")} == {1}


def test_graceful_stop_waits_for_the_coroutines_in_flight(aapp, start_worker, r):
    worker = start_worker("-P", "solo", app=APP)
    with aapp.app_context():
        results = [sleeper.delay(f"g{i}", 1.5) for i in range(5)]
        wait_until(lambda: r.hlen("aio:started") == 5, 15, message="5 coroutines started")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert [res.state for res in results] == ["SUCCESS"] * 5
    assert {int(n) for n in r.hvals("aio:finished")} == {1}
    assert r.hlen("aio:cancelled") == 0


def test_prefork_children_each_run_their_own_loop(aapp, start_worker, r):
    start_worker("-P", "prefork", "-c", "2", app=APP)
    with aapp.app_context():
        results = [nap.delay(f"c{i}", 0.5) for i in range(100)]
        sums = [add.delay(i, i) for i in range(10)]
        assert [res.get(timeout=60) for res in results] == [f"c{i}" for i in range(100)]
        assert [res.get(timeout=10) for res in sums] == [2 * i for i in range(10)]
    assert peak(r) > 10


def test_signals_and_failures_of_async_tasks(aapp, start_worker, r):
    """task_prerun/postrun/success/failure are sent for async tasks, in their app context
    (the receivers read the app's config)."""
    start_worker("-P", "solo", app=APP, env={"ASYNC_APP_SIGNALS": "1"})
    with aapp.app_context():
        assert double.delay(21).get(timeout=10) == 42
        failed = boom.delay("x")
        with pytest.raises(Flaky, match="boom x"):
            failed.get(timeout=10)
        assert failed.state == "FAILURE"
    wait_until(lambda: r.llen("aio:signals") >= 6, 10, message="six signals")
    marker = "from-the-app-config"
    assert r.lrange("aio:signals", 0, -1) == [
        f"prerun double - {marker}",
        f"success double 42 {marker}",
        f"postrun double SUCCESS {marker}",
        f"prerun boom - {marker}",
        f"failure boom Flaky {marker}",
        f"postrun boom FAILURE {marker}",
    ]


def test_a_chain_of_async_and_sync_tasks(aapp, start_worker):
    start_worker("-P", "threads", "-c", "2", app=APP)
    with aapp.app_context():
        result = chain(double.s(1), double.s(), add.s(1), double.s()).delay()
        assert result.get(timeout=20) == 10


def test_async_tasks_on_memory_transport_run_in_the_apps_worker(monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    monkeypatch.delenv("TASKQ_ALWAYS_EAGER", raising=False)
    app = async_app.create_app()
    with app.app_context():
        results = [double.delay(i) for i in range(20)]
        assert [res.get(timeout=10) for res in results] == [2 * i for i in range(20)]
        results = [quick.delay(i) for i in range(300)]
        assert [res.get(timeout=20) for res in results] == list(range(300))
        assert whoami.delay(2).get(timeout=10)["marker"] == "from-the-app-config"


def test_eager_async_task_that_runs_another_eagerly(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_ALWAYS_EAGER", "1")
    app = async_app.create_app()
    with app.app_context():
        assert outer.delay(4).get(timeout=5) == 5
        with pytest.raises(Flaky):
            boom.delay("e").get(timeout=5)


def test_graceful_stop_gives_up_after_the_shutdown_timeout(aapp, start_worker, r):
    worker = start_worker("-P", "solo", "--shutdown-timeout", "1", app=APP)
    with aapp.app_context():
        res = sleeper.delay("stuck", 60)
        wait_until(lambda: r.hget("aio:started", "stuck"), 15, message="the coroutine started")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 1
        # not acked: delivered again after the lease (STARTED, once the batch carried it)
        assert res.state in ("PENDING", "STARTED")
    assert "did not finish within 1s" in worker.log


def test_calling_an_async_task_returns_a_coroutine_run_in_the_app_context():
    import asyncio

    from flask import Flask, current_app

    from flask_taskq import TaskQueue

    app = Flask("direct")
    app.config["TASKQ_BROKER_URL"] = "memory://"
    tq = TaskQueue(app)

    @tq.task
    async def name_of_app(suffix):
        await asyncio.sleep(0)
        return current_app.name + suffix

    assert name_of_app.is_async
    coro = name_of_app("!")
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == "direct!"  # no app context here: the task pushes one
    with app.app_context():
        assert asyncio.run(name_of_app("?")) == "direct?"


def test_leases_of_coroutines_in_flight_are_renewed(aapp, start_worker, r):
    """Coroutines that run past the visibility timeout, with a second worker waiting to
    take over expired leases: none runs twice."""
    env = {"TASKQ_VISIBILITY_TIMEOUT": "1.5"}
    start_worker("-P", "solo", app=APP, env=env)
    with aapp.app_context():
        results = [sleeper.delay(f"r{i}", 4) for i in range(10)]
        wait_until(lambda: r.hlen("aio:started") == 10, 15, message="10 coroutines started")
        start_worker("-P", "solo", app=APP, env=env)
        assert [res.get(timeout=30) for res in results] == [f"r{i}" for i in range(10)]
    assert {int(n) for n in r.hvals("aio:attempts")} == {1}
