"""Revocation, expiry and time limits with real workers."""

from __future__ import annotations

import signal
import time

import pytest

from flask_taskq import TaskRevokedError, TimeLimitExceeded, signals
from tests.apps import control
from tests.apps.control import hard_limited, hard_then_quick, record, soft_limited
from tests.conftest import wait_until

APP = "tests.apps.control:create_app"


@pytest.fixture
def capp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    return control.create_app()


def runs(r, token):
    return int(r.hget("ctl:runs", token) or 0)


def test_revoked_before_start_never_runs(capp, start_worker, r):
    with capp.app_context():
        doomed = record.delay("doomed")
        doomed.revoke()
        kept = record.delay("kept")
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        assert kept.get(timeout=10) == "kept"
        with pytest.raises(TaskRevokedError, match="revoked"):
            doomed.get(timeout=10)
        assert doomed.state == "REVOKED"
    assert runs(r, "doomed") == 0


def test_a_revoke_that_returned_before_the_send_always_wins(capp, start_worker, r):
    """Revocations made until a worker takes a message arrive with it (same round trip),
    whether the worker was waiting or busy: no window in which a revoked task runs."""
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        assert record.delay("warm").get(timeout=10) == "warm"
        for i in range(20):
            capp.extensions["taskq"].revocations.revoke([f"doomed-{i}"])
            record.apply_async(("doomed",), task_id=f"doomed-{i}")
            assert record.delay(f"kept-{i}").get(timeout=10) == f"kept-{i}"
    assert runs(r, "doomed") == 0


def test_revocations_survive_a_worker_restart(capp, start_worker, r):
    first = start_worker("-P", "solo", app=APP)
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    with capp.app_context():
        res = record.delay("late")
        res.revoke()
    start_worker("-P", "solo", app=APP)  # a new process reads the revocation from Redis
    with capp.app_context():
        assert res.get(timeout=10, propagate=False).__class__ is TaskRevokedError
    assert runs(r, "late") == 0


@pytest.mark.parametrize("pool", ["solo", "prefork", "threads"])
def test_terminate_stops_a_running_task(capp, start_worker, r, pool):
    worker = start_worker("-P", pool, "-c", "1", app=APP)
    with capp.app_context():
        res = record.delay("long", seconds=30)
        wait_until(lambda: r.hget("ctl:started_at", "long"))
        res.revoke(terminate=True)
        with pytest.raises(TaskRevokedError, match="terminated"):
            res.get(timeout=10)
        assert record.delay("after").get(timeout=10) == "after"  # the worker goes on
    assert runs(r, "long") == 0
    assert worker.proc.poll() is None


def test_expired_task_is_not_run_and_says_why(capp, start_worker, r):
    with capp.app_context():
        res = record.apply_async(("stale",), expires=time.time() - 1)  # already past
    start_worker("-P", "solo", app=APP)
    with capp.app_context(), pytest.raises(TaskRevokedError, match="expired"):
        res.get(timeout=10)
    assert runs(r, "stale") == 0


def test_expired_task_fires_task_revoked_in_eager_mode(capp):
    from flask_taskq.testing import eager

    got = []

    def receiver(sender, **kw):
        got.append((kw["task_id"], kw["expired"]))

    signals.task_revoked.connect(receiver)
    try:
        with eager(capp), capp.app_context():
            res = record.apply_async(("x",), expires=time.time() - 1)
            assert res.state == "REVOKED"
    finally:
        signals.task_revoked.disconnect(receiver)
    assert got == [(res.id, True)]


@pytest.mark.parametrize("pool", ["solo", "prefork", "threads"])
def test_soft_time_limit_raises_inside_the_task(capp, start_worker, r, pool):
    start_worker("-P", pool, "-c", "1", app=APP)
    with capp.app_context():
        # threads: the exception arrives when the sleeping thread runs Python again
        seconds = 1.5 if pool == "threads" else 30
        assert soft_limited.delay("s", seconds).get(timeout=20) == "cleaned up"
    assert r.hget("ctl:soft", "s") == "caught"


def test_hard_time_limit_kills_the_child_and_fails_the_task(capp, start_worker, r):
    worker = start_worker("-P", "prefork", "-c", "1", app=APP)
    with capp.app_context():
        res = hard_limited.delay("h", 30)
        with pytest.raises(TimeLimitExceeded, match="time_limit of 1s"):
            res.get(timeout=20)
        worker.wait_for_log(" ready", count=2)  # the child was replaced
        assert record.delay("next").get(timeout=10) == "next"
    assert int(r.hget("ctl:attempts", "h")) == 1


def test_hard_time_limit_retries_when_the_task_says_so(capp, start_worker, r):
    start_worker("-P", "prefork", "-c", "1", app=APP)
    with capp.app_context():
        assert hard_then_quick.delay("q").get(timeout=30) == "second attempt"
    assert int(r.hget("ctl:attempts", "q")) == 2


def test_hard_limit_outside_prefork_warns_at_start(start_worker):
    worker = start_worker("-P", "solo", app=APP)
    worker.wait_for_log("time_limit is enforced only by the prefork pool")


def test_revoke_command(capp, start_worker, r):
    with capp.app_context():
        res = record.delay("by-cli")
    out = capp.test_cli_runner().invoke(args=["taskq", "revoke", res.id])
    assert out.exit_code == 0 and f"Revoked 1 task(s): {res.id}" in out.output
    start_worker("-P", "solo", app=APP)
    with capp.app_context(), pytest.raises(TaskRevokedError):
        res.get(timeout=10)
    assert runs(r, "by-cli") == 0


def test_revoke_command_terminates(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        res = record.delay("cli-long", seconds=30)
        wait_until(lambda: r.hget("ctl:started_at", "cli-long"))
        out = capp.test_cli_runner().invoke(args=["taskq", "revoke", "--terminate", res.id])
        assert out.exit_code == 0, out.output
        with pytest.raises(TaskRevokedError, match="terminated"):
            res.get(timeout=10)


def test_soft_limit_in_a_threads_pool_with_equal_hard_limit(capp, start_worker, r):
    """The threads pool cannot enforce time_limit; the soft limit must still apply."""
    start_worker("-P", "threads", "-c", "2", app=APP)
    with capp.app_context():
        assert control.both_limits.delay("eq").get(timeout=20) == "cleaned up"


def test_hard_limit_frees_the_unique_key(capp, start_worker, r):
    start_worker("-P", "prefork", "-c", "1", app=APP)
    with capp.app_context():
        res = control.unique_hard.delay("u")
        with pytest.raises(TimeLimitExceeded):
            res.get(timeout=20)
        wait_until(lambda: not r.keys("taskq:unique:*"))
