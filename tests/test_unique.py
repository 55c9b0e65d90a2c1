"""Unique tasks: a second enqueue while the first waits or runs returns the first."""

from __future__ import annotations

import pytest

from tests.apps import control
from tests.apps.control import once, per_user
from tests.conftest import wait_until

APP = "tests.apps.control:create_app"


@pytest.fixture
def capp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    app = control.create_app()
    with app.app_context():
        yield app


def test_second_enqueue_while_waiting_returns_the_first(capp, r):
    first = once.delay("a")
    second = once.delay("a")
    other = once.delay("b")
    assert second.id == first.id
    assert other.id != first.id
    assert r.xlen("taskq:{default}:p5") == 2


def test_key_is_held_while_running_and_freed_after(capp, start_worker, r):
    start_worker("-P", "solo", app=APP)
    first = once.delay("slow", seconds=1.0)
    wait_until(lambda: r.hget("ctl:started_at", "slow"))
    assert once.delay("slow", seconds=1.0).id == first.id  # running: still the same
    assert first.get(timeout=10) == "slow"
    wait_until(lambda: not r.keys("taskq:unique:*"))
    again = once.delay("slow", seconds=0)
    assert again.id != first.id
    assert again.get(timeout=10) == "slow"
    assert r.hget("ctl:runs", "slow") == "2"


def test_callable_key(capp, r):
    a = per_user.delay(7, "hello")
    b = per_user.delay(7, "again")
    c = per_user.delay(8, "hello")
    assert a.id == b.id != c.id
    assert r.ttl("taskq:unique:tests.apps.control.per_user:user-7") > 3000  # default 1 h


def test_unique_for_bounds_how_long_the_key_is_held(capp, r):
    once.delay("ttl")
    [key] = r.keys("taskq:unique:*")
    assert 0 < r.ttl(key) <= 60


def test_countdown_unique_task_waits_in_the_delayed_set(capp, r):
    first = once.apply_async(("later",), countdown=600)
    assert once.apply_async(("later",), countdown=600).id == first.id
    assert r.zcard("taskq:{default}:delayed") == 1
