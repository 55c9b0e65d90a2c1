"""Delayed tasks, routing, fair queues, priorities and quarantine of crashing tasks, with
real worker processes (the app is ``tests.apps.chaos``).

Timing bounds appear only where the behaviour is about time (countdown and eta): a delayed
task must not start before it is due, and a worker promotes it at most ~1 s late.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from flask_taskq import WorkerLostError
from tests.apps import chaos
from tests.apps.chaos import note, stamp, suicide, to_a, to_b, to_b_too
from tests.conftest import wait_until

APP = "tests.apps.chaos:create_app"
DELAYED = "taskq:{default}:delayed"
#: Slack for "not before it is due": both clocks are this machine's, but the due time is
#: stored as a float.
EARLY = 0.05
#: How late a worker may start a due task: it looks for due tasks at least once a second.
LATE = 1.5


@pytest.fixture
def capp(redis_url, monkeypatch):
    """The chaos app on the test Redis, as the sending side."""
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    return chaos.create_app()


def started_at(r, token):
    value = r.hget("chaos:started_at", token)
    return float(value) if value is not None else None


def runs(r, token):
    return int(r.hget("chaos:runs", token) or 0)


def nothing_left(r, queue="default"):
    """True once ``queue`` holds no message: none delayed, none ready, none leased."""
    streams = [f"taskq:{{{queue}}}:p{p}" for p in range(10)]
    return r.zcard(f"taskq:{{{queue}}}:delayed") == 0 and all(r.xlen(s) == 0 for s in streams)


# -- countdown and eta ----------------------------------------------------------------------
def test_countdown_starts_at_its_due_time_not_before(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        before = time.time()
        res = stamp.apply_async(("soon",), countdown=2)
        after = time.time()
        assert res.get(timeout=15) == "soon"
    started = started_at(r, "soon")
    assert started >= before + 2 - EARLY, "started before its countdown ran out"
    assert started <= after + 2 + LATE, "started too long after it was due"
    assert runs(r, "soon") == 1


def test_countdown_survives_a_sigkilled_worker(capp, start_worker, r):
    first = start_worker("-P", "solo", app=APP)
    with capp.app_context():
        before = time.time()
        res = stamp.apply_async(("survivor",), countdown=3)
    due = before + 3
    first.kill_group()
    assert time.time() < due, "the worker was to be killed before the task was due"
    assert r.zcard(DELAYED) == 1  # the delayed message lives in Redis, not in the worker
    assert runs(r, "survivor") == 0

    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        assert res.get(timeout=15) == "survivor"
    assert started_at(r, "survivor") >= due - EARLY
    wait_until(lambda: nothing_left(r), message="the queue to be empty")
    assert runs(r, "survivor") == 1


def test_eta_as_an_aware_utc_datetime(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    eta = datetime.now(timezone.utc) + timedelta(seconds=2)
    with capp.app_context():
        assert stamp.apply_async(("at-eta",), eta=eta).get(timeout=15) == "at-eta"
    due = eta.timestamp()
    started = started_at(r, "at-eta")
    assert started >= due - EARLY, "started before its eta"
    assert started <= due + LATE, "started too long after its eta"
    assert runs(r, "at-eta") == 1


# -- routing and fairness -------------------------------------------------------------------
def test_routed_tasks_run_only_on_the_worker_of_their_queue(capp, start_worker, r):
    worker_a = start_worker("-P", "solo", "-Q", "qa", app=APP)
    worker_b = start_worker("-P", "solo", "-Q", "qb", app=APP)
    with capp.app_context():
        on_a = [to_a.delay() for _ in range(10)]  # exact-name route -> qa
        on_b = [t.delay() for t in (to_b, to_b_too) for _ in range(5)]  # glob route -> qb
        pids_a = {res.get(timeout=15) for res in on_a}
        pids_b = {res.get(timeout=15) for res in on_b}
    assert pids_a == {worker_a.proc.pid}
    assert pids_b == {worker_b.proc.pid}


def test_a_worker_on_two_queues_starves_neither(capp, start_worker, r):
    with capp.app_context():
        for _ in range(200):
            note.apply_async(("qa",), queue="qa")
        for _ in range(200):
            note.apply_async(("qb",), queue="qb")
    start_worker("-P", "solo", "-Q", "qa,qb", "--prefetch", "1", app=APP)
    wait_until(lambda: r.llen("chaos:order") >= 100, timeout=60, message="100 tasks to start")
    first_100 = r.lrange("chaos:order", 0, 99)
    assert first_100.count("qa") >= 30, first_100
    assert first_100.count("qb") >= 30, first_100


# -- priorities -----------------------------------------------------------------------------
def test_higher_priority_runs_first_and_fifo_within_a_priority(capp, start_worker, r):
    with capp.app_context():
        for i in range(5):  # interleaved, so that sending order is not the answer
            for priority in (0, 5, 9):
                note.apply_async((f"p{priority}-{i}",), priority=priority)
    start_worker("-P", "solo", "--prefetch", "1", app=APP)
    wait_until(lambda: r.llen("chaos:order") == 15, timeout=30, message="15 tasks to start")
    expected = [f"p{priority}-{i}" for priority in (9, 5, 0) for i in range(5)]
    assert r.lrange("chaos:order", 0, -1) == expected


# -- quarantine -----------------------------------------------------------------------------
def test_a_task_that_kills_its_process_is_quarantined(capp, start_worker, r):
    """Each start kills the prefork child; the supervisor replaces it, the lease expires,
    the message is reclaimed, and after TASKQ_MAX_DELIVERIES starts it is dead-lettered."""
    worker = start_worker(
        "-P",
        "prefork",
        "-c",
        "1",
        app=APP,
        env={"TASKQ_VISIBILITY_TIMEOUT": "1", "TASKQ_MAX_DELIVERIES": "3"},
    )
    with capp.app_context():
        poison = suicide.delay("poison")
        bystanders = [stamp.delay(f"ok{i}") for i in range(5)]
        assert [res.get(timeout=30) for res in bystanders] == [f"ok{i}" for i in range(5)]

    dead = wait_until(
        lambda: r.xrange("taskq:{default}:dead"),
        timeout=30,
        message="the poison task in the dead letters",
    )
    assert len(dead) == 1
    _, letter = dead[0]
    assert letter["id"] == poison.id
    assert letter["task"] == "tests.apps.chaos.suicide"
    assert "started 3 times" in letter["reason"]
    assert "delivered 4 times" in letter["reason"]
    assert int(r.hget("chaos:starts", "poison")) == 3
    assert all(runs(r, f"ok{i}") == 1 for i in range(5))

    with capp.app_context():  # the worker goes on after the quarantine
        with pytest.raises(WorkerLostError):
            poison.get(timeout=10)
        assert stamp.delay("after").get(timeout=30) == "after"
    assert worker.proc.poll() is None
    assert worker.log.count(" ready") >= 4  # the first child and three replacements
