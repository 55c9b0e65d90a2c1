"""The worker as users run it: ``flask taskq worker`` processes against a real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis

from flask_taskq import WorkerLostError
from flask_taskq.message import Message
from flask_taskq.serializer import get_serializer
from tests.apps.basic import CustomError, add, context_probe, fail, mark, whoami
from tests.conftest import ROOT, wait_until


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork"])
def test_round_trip_in_every_pool(app, start_worker, pool):
    start_worker("-P", pool, "-c", "2")
    with app.app_context():
        results = [add.delay(i, i) for i in range(20)]
        assert [res.get(timeout=10) for res in results] == [2 * i for i in range(20)]


def test_exception_type_propagates(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        res = fail.delay("no luck")
        with pytest.raises(CustomError, match="no luck"):
            res.get(timeout=10)
        assert res.state == "FAILURE"
        assert "CustomError: no luck" in res.traceback


def test_each_task_gets_a_fresh_app_context(app, start_worker, r):
    start_worker("-P", "solo", env={"TASKQ_COUNT_TEARDOWN": "1"})
    with app.app_context():
        first = context_probe.delay().get(timeout=10)
        second = context_probe.delay().get(timeout=10)
    assert first["app"] == second["app"] == "basic"
    assert first["pid"] == second["pid"]  # same process, yet `g` did not carry over
    assert first["g_before"] is None and second["g_before"] is None
    assert int(r.get("test:teardowns")) >= 2


def test_bound_task_sees_its_request(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        res = whoami.delay()
        info = res.get(timeout=10)
    assert info == {"id": res.id, "task": "tests.apps.basic.whoami", "deliveries": 1}


def test_logs_carry_task_name_and_id(app, start_worker):
    worker = start_worker("-P", "solo")
    with app.app_context():
        res = add.delay(1, 1)
        res.get(timeout=10)
    worker.wait_for_log(f"tests.apps.basic.add[{res.id}] succeeded")


def test_prefork_replaces_a_dead_child(app, start_worker, r):
    worker = start_worker("-P", "prefork", "-c", "2")
    with app.app_context():
        pid = context_probe.delay().get(timeout=10)["pid"]
        os.kill(pid, signal.SIGKILL)
        worker.wait_for_log(" ready", count=3)
        pids = {context_probe.delay().get(timeout=10)["pid"] for _ in range(20)}
    assert pid not in pids
    assert worker.proc.poll() is None


def test_max_tasks_per_child_recycles_the_child(app, start_worker):
    worker = start_worker("-P", "prefork", "-c", "1", "--max-tasks-per-child", "2")
    with app.app_context():
        pids = [context_probe.delay().get(timeout=10)["pid"] for _ in range(4)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
    assert worker.proc.poll() is None


def test_higher_priority_runs_first(app, start_worker, r):
    with app.app_context():
        for i in range(5):
            mark.apply_async((f"low{i}",), priority=1)
        mark.apply_async(("high",), priority=9)
    start_worker("-P", "solo", "--prefetch", "1")
    wait_until(lambda: r.hlen("test:runs") == 6)
    assert r.lrange("test:order", 0, -1) == ["high"] + [f"low{i}" for i in range(5)]


def test_worker_consumes_several_queues(app, start_worker, r):
    start_worker("-P", "solo", "-Q", "default,other")
    with app.app_context():
        a = mark.apply_async(("a",), queue="default")
        b = mark.apply_async(("b",), queue="other")
        assert {a.get(timeout=10), b.get(timeout=10)} == {"a", "b"}


def dead_letters(redis_url):
    raw = redis.Redis.from_url(redis_url)
    return [
        {k.decode(): v for k, v in fields.items()}
        for _, fields in raw.xrange("taskq:{default}:dead")
    ]


def test_undecodable_message_goes_to_dead_letters(app, start_worker, r, redis_url):
    start_worker("-P", "solo")
    r.xadd("taskq:{default}:p5", {"m": b"\xff not json"})
    wait_until(lambda: r.xlen("taskq:{default}:dead") == 1)
    entry = dead_letters(redis_url)[0]
    assert b"undecodable" in entry["reason"]
    assert entry["body"] == b"\xff not json"
    with app.app_context():  # the worker goes on
        assert add.delay(1, 2).get(timeout=10) == 3


def test_unknown_task_goes_to_dead_letters_and_fails(app, start_worker, redis_url):
    start_worker("-P", "solo")
    with app.app_context():
        res = app.extensions["taskq"].taskqueue.send_task("no.such.task", args=(1,))
        with pytest.raises(Exception, match="not registered"):
            res.get(timeout=10)
    entry = dead_letters(redis_url)[0]
    assert entry["task"] == b"no.such.task" and entry["id"] == res.id.encode()


def test_message_delivered_too_often_is_dead_lettered(app, start_worker, r, redis_url):
    """A message whose worker keeps dying is parked, not retried forever."""
    body = Message(id="poison", task="tests.apps.basic.add", args=(1, 2)).to_bytes(
        get_serializer("json")
    )
    r.xgroup_create("taskq:{default}:p5", "workers", id="0", mkstream=True)
    entry_id = r.xadd("taskq:{default}:p5", {"m": body})
    r.xreadgroup("workers", "dead-0", {"taskq:{default}:p5": ">"})
    for i in range(1, 6):  # five more consumers take it over and "die" in turn
        r.xautoclaim("taskq:{default}:p5", "workers", f"dead-{i}", 0)
    r.set(f"taskq:{{default}}:starts:{entry_id}", 5)  # ...each after starting it
    start_worker("-P", "solo", env={"TASKQ_VISIBILITY_TIMEOUT": "0.3"})
    wait_until(lambda: r.xlen("taskq:{default}:dead") == 1)
    assert b"delivered 7 times" in dead_letters(redis_url)[0]["reason"]
    with app.app_context(), pytest.raises(WorkerLostError, match="started 6 times"):
        app.extensions["taskq"].taskqueue.AsyncResult("poison").get(timeout=5)


def test_worker_with_unreachable_redis_says_so_in_one_line():
    env = {**os.environ, "TASKQ_BROKER_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.apps.basic:create_app",
            "taskq",
            "worker",
            "-P",
            "solo",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_flag_is_a_usage_error(redis_url):
    env = {**os.environ, "TASKQ_BROKER_URL": redis_url}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.apps.basic:create_app",
            "taskq",
            "worker",
            "-P",
            "gevent",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "gevent" in proc.stderr


def test_worker_signals_fire_in_the_worker_process(app, start_worker, r):
    worker = start_worker("-P", "solo", env={"TASKQ_RECORD_SIGNALS": "1"})
    with app.app_context():
        ok = add.delay(1, 2)
        ok.get(timeout=10)
        bad = fail.delay("x")
        with pytest.raises(CustomError):
            bad.get(timeout=10)
        lost = app.extensions["taskq"].taskqueue.send_task("no.such")
        with pytest.raises(Exception, match="not registered"):
            lost.get(timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    pid = worker.proc.pid
    assert r.lrange("test:signals", 0, -1) == [
        f"worker_ready {pid} Worker",
        f"task_received {pid} tests.apps.basic.add {ok.id}",
        f"task_prerun {pid} tests.apps.basic.add {ok.id} basic",
        f"task_success {pid} tests.apps.basic.add {ok.id} 3",
        f"task_postrun {pid} tests.apps.basic.add {ok.id} SUCCESS",
        f"task_received {pid} tests.apps.basic.fail {bad.id}",
        f"task_prerun {pid} tests.apps.basic.fail {bad.id} basic",
        f"task_failure {pid} tests.apps.basic.fail {bad.id} CustomError",
        f"task_postrun {pid} tests.apps.basic.fail {bad.id} FAILURE",
        f"task_received {pid} no.such {lost.id}",
        f"task_rejected {pid} no.such {lost.id}",
        f"worker_shutdown {pid} Worker",
    ]


def test_graceful_stop_leaves_no_consumer_behind(app, start_worker, r):
    worker = start_worker("-P", "solo")
    with app.app_context():
        add.delay(1, 1).get(timeout=10)
    assert r.xinfo_consumers("taskq:{default}:p5", "workers")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert r.xinfo_consumers("taskq:{default}:p5", "workers") == []


def test_finished_results_are_not_held_back_by_a_long_task(app, start_worker, r):
    with app.app_context():
        fast = [add.delay(i, 1) for i in range(30)]
        mark.delay("long", seconds=5.0)
    start_worker("-P", "solo", "--prefetch", "64")
    wait_until(lambda: r.hget("test:started", "long"))
    with app.app_context():
        wait_until(
            lambda: all(res.ready() for res in fast), timeout=3, message="results of the fast tasks"
        )
    assert r.hget("test:runs", "long") is None  # still running


def test_a_failing_signal_receiver_does_not_stop_the_worker(app, start_worker):
    worker = start_worker("-P", "solo", env={"TASKQ_BROKEN_RECEIVER": "1"})
    with app.app_context():
        assert add.delay(2, 2).get(timeout=10) == 4
    assert "Receiver" in worker.log and "raised" in worker.log
