"""Recent failures: tasks that failed without being dead-lettered, remembered by the
workers' heartbeats in a capped index (``Monitor.failures``) and listed by ``flask taskq
inspect failed`` beside the dead letters."""

from __future__ import annotations

import json

import pytest

from flask_taskq import monitor as monitor_module
from flask_taskq.keys import Keys
from flask_taskq.monitor import Monitor, failure_key
from tests.conftest import wait_until
from tests.test_dashboard import boom, create_app, fragile, quiet_boom


@pytest.fixture
def dash(redis_url):
    return create_app(TASKQ_BROKER_URL=redis_url)


@pytest.fixture
def mon(dash):
    return Monitor(dash.extensions["taskq"].store.monitor)


def failed_json(app):
    result = app.test_cli_runner().invoke(args=["taskq", "inspect", "failed", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_inspect_failed_lists_failures_and_dead_letters(dash, start_worker, mon):
    assert failed_json(dash) == {"failed": [], "recent_failures": []}
    assert (
        dash.test_cli_runner().invoke(args=["taskq", "inspect", "failed"]).output
        == "No failures.\n"
    )
    start_worker("-P", "solo", "-n", "fails@test", app="tests.test_dashboard:create_app")
    with dash.app_context():
        plain = boom.delay("kaput")
        dead = fragile.delay("dl")
        quiet = quiet_boom.delay("hush")
        with pytest.raises(ValueError):
            plain.get(timeout=10)
        with pytest.raises(RuntimeError):
            dead.get(timeout=10)
    got = wait_until(
        lambda: (d := failed_json(dash)) and len(d["recent_failures"]) == 2 and d,
        message="two recent failures in inspect failed",
    )
    recent = {row["task_id"]: row for row in got["recent_failures"]}
    assert set(recent) == {plain.id, quiet.id}  # the dead-lettered one is not repeated
    row = recent[plain.id]
    assert set(row) == {"task_id", "task", "queue", "time", "exception", "worker", "retryable"}
    assert row["task"] == boom.name and row["queue"] == "default"
    assert row["exception"] == "ValueError: kaput" and row["retryable"] is True
    assert row["worker"].startswith("fails@test") and row["time"].endswith("+00:00")
    # ignore_result: recorded all the same, without the exception (no result is stored)
    assert recent[quiet.id]["task"] == quiet_boom.name
    assert recent[quiet.id]["exception"] == "(result not kept)"
    # the dead letters keep their former shape under "failed"
    [letter] = got["failed"]
    assert letter["task_id"] == dead.id
    assert set(letter) == {"entry_id", "queue", "task", "task_id", "reason", "time"}
    text = dash.test_cli_runner().invoke(args=["taskq", "inspect", "failed"]).output
    assert "Recent failures (no dead letter):" in text and "Dead letters:" in text
    assert plain.id in text and "ValueError: kaput" in text and dead.id in text


def test_the_index_keeps_the_newest(mon, monkeypatch):
    monkeypatch.setattr(monitor_module, "MAX_FAILURES", 3)
    for batch in (range(0, 4), range(4, 6)):
        counters = {failure_key("default", "t", f"id{i}", b"{}"): 1000.0 + i for i in batch}
        mon.beat("p1", {"worker": "w"}, counters)  # type: ignore[arg-type]
    assert [f["id"] for f in mon.failures()] == ["id5", "id4", "id3"]
    assert mon.failure_count() == 3
    assert mon.store.client.hlen(Keys("taskq").failure_records()) == 3
    assert mon.failure("id0") is None and mon.failure("id4")["time"] == 1004.0
    assert [f["id"] for f in mon.failures(limit=1)] == ["id5"]


def test_take_failure_gives_it_once(mon):
    body = b'{"id": "x1", "task": "t", "args": [1]}'
    mon.beat("p1", {}, {failure_key("q", "t", "x1", body): 5.0})  # type: ignore[arg-type]
    record = mon.failure("x1")
    assert record == {
        "id": "x1",
        "task": "t",
        "queue": "q",
        "time": 5.0,
        "worker": "p1",
        "body": body,
    }
    assert mon.take_failure("x1") == record
    assert mon.take_failure("x1") is None and mon.failures() == []


def test_a_large_message_is_listed_without_its_body(mon, monkeypatch):
    monkeypatch.setattr(monitor_module, "MAX_FAILURE_BODY", 10)
    mon.beat("p1", {}, {failure_key("q", "t", "big", b"x" * 11): 1.0})  # type: ignore
    [record] = mon.failures()
    assert record["id"] == "big" and record["body"] is None
