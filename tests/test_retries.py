"""Retries: ``self.retry``, ``autoretry_for`` with backoff, exhaustion and dead letters."""

from __future__ import annotations

import itertools

import pytest
import redis

from flask_taskq import signals
from tests.apps import control
from tests.apps.control import Flaky, auto, flaky, hopeless, rejecting
from tests.conftest import wait_until

APP = "tests.apps.control:create_app"


@pytest.fixture
def capp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    return control.create_app()


def attempts(r, token):
    return int(r.hget("ctl:attempts", token) or 0)


def test_retry_then_success_with_the_right_counts(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        res = flaky.delay("f", 2)
        assert res.get(timeout=15) == {"attempt": 3, "retries": 2}
    assert attempts(r, "f") == 3
    assert r.zcard("taskq:{default}:delayed") == 0


def test_state_is_retry_with_the_last_exception_while_waiting(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        res = flaky.apply_async(("w", 1))
        wait_until(lambda: res.state == "RETRY")
        assert isinstance(res.result, Flaky) and str(res.result) == "attempt 1"
        assert res.get(timeout=15)["attempt"] == 2


def test_exhausted_retries_raise_the_last_exception_and_dead_letter(
    capp, start_worker, redis_url, r
):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        res = hopeless.delay("h")
        with pytest.raises(Flaky, match="attempt 3"):
            res.get(timeout=15)
    assert attempts(r, "h") == 3  # the first run and two retries
    raw = redis.Redis.from_url(redis_url)
    [(_, entry)] = raw.xrange("taskq:{default}:dead")
    assert entry[b"id"] == res.id.encode()
    assert entry[b"reason"].startswith(b"retries exhausted after 2 (max_retries=2): Flaky")
    assert b"Flaky: attempt 3" in entry[b"traceback"]
    assert entry[b"worker"]


def test_autoretry_for_backs_off(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        assert auto.delay("a", 3).get(timeout=20) == 4
    times = [float(t) for t in r.lrange("ctl:times:a", 0, -1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # backoff 0.1 * 2**n: 0.1, 0.2, 0.4 s (a worker may promote up to a second late)
    assert [round(g, 1) >= d for g, d in zip(gaps, (0.1, 0.2, 0.4), strict=True)] == [
        True,
        True,
        True,
    ]


def test_autoretry_gives_up_after_max_retries(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context(), pytest.raises(Flaky, match="attempt 4"):
        auto.delay("g", 10).get(timeout=20)
    assert attempts(r, "g") == 4


def test_reject_dead_letters_without_retrying(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    with capp.app_context():
        res = rejecting.delay("rej")
        with pytest.raises(Exception, match="not for us"):
            res.get(timeout=10)
    assert attempts(r, "rej") == 1
    wait_until(lambda: r.xlen("taskq:{default}:dead") == 1)


def test_retries_run_at_once_in_eager_mode(capp):
    capp.extensions["taskq"].eager = True
    from flask_taskq.testing import eager

    with eager(capp), capp.app_context():
        retried = []
        signals.task_retry.connect(lambda s, **kw: retried.append(kw["task_id"]), weak=False)
        try:
            res = flaky.delay("e", 2)
        finally:
            signals.task_retry.receivers.clear()
        assert res.get() == {"attempt": 3, "retries": 2}
        assert retried == [res.id, res.id]


def test_retry_outside_a_worker_is_a_clear_error():
    @control.tq.task(bind=True)
    def lonely(self):
        return self.retry()

    with pytest.raises(RuntimeError, match="retry\\(\\) is for a task running in a worker"):
        lonely()
