"""``flask taskq queues pause|resume`` and ``flask taskq status``."""

from __future__ import annotations

import json

import pytest

from flask_taskq.keys import Keys
from flask_taskq.monitor import Monitor
from flask_taskq.store.redis.monitor import RedisMonitorStore
from tests.apps.basic import add, fail, mark, noop
from tests.conftest import wait_until


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["taskq", *args])


def test_pause_and_resume_a_queue(app, start_worker, redis_server):
    monitor = Monitor(RedisMonitorStore(redis_server.client(), Keys("taskq")))
    start_worker("-P", "solo")
    result = cli(app, "queues", "pause", "default")
    assert result.exit_code == 0 and "Paused default" in result.output
    assert monitor.paused() == {"default"}
    seen = wait_until(
        lambda: [p["heartbeat"] for p in monitor.processes() if p["paused"] == ["default"]]
    )
    wait_until(lambda: monitor.processes()[0]["heartbeat"] > seen[0])
    with app.app_context():
        res = add.delay(1, 2)
        with pytest.raises(TimeoutError):
            res.get(timeout=1.5)
        assert cli(app, "queues", "resume", "default").exit_code == 0
        assert res.get(timeout=10) == 3


def test_status_of_a_finished_task(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        res = add.delay(20, 22)
        res.get(timeout=10)
    result = cli(app, "status", res.id)
    assert result.exit_code == 0
    assert "state    SUCCESS" in result.output and "result   42" in result.output
    doc = json.loads(cli(app, "status", res.id, "--json").output)
    assert doc["state"] == "SUCCESS" and doc["result"] == 42


def test_status_of_a_task_that_returned_none(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        res = noop.delay()
        res.get(timeout=10)
    result = cli(app, "status", res.id)
    assert result.exit_code == 0
    assert "state    SUCCESS" in result.output and "result   None" in result.output
    assert "done     " in result.output
    # a SUCCESS document leaves out the task name (TASKQ_RESULT_EXTENDED is off): no line
    assert [line for line in result.output.splitlines() if line.startswith("name")] == []
    doc = json.loads(cli(app, "status", res.id, "--json").output)
    assert doc["state"] == "SUCCESS" and doc["result"] is None and doc["date_done"]
    assert doc["task"] is None


def test_status_names_the_task_of_a_failure_and_of_an_extended_success(app, start_worker):
    start_worker("-P", "solo", env={"TASKQ_RESULT_EXTENDED": "1"})
    with app.app_context():
        ok, bad = noop.delay(), fail.delay("why")
        ok.get(timeout=10)
        bad.get(timeout=10, propagate=False)
    assert "name     tests.apps.basic.noop" in cli(app, "status", ok.id).output
    shown = cli(app, "status", bad.id).output
    assert "state    FAILURE" in shown and "name     tests.apps.basic.fail" in shown


def test_status_shows_the_worker_of_a_running_task(app, start_worker, r):
    start_worker("-P", "solo", "-n", "busy@test")
    with app.app_context():
        res = mark.delay("slow", seconds=4)
    wait_until(
        lambda: "busy@test" in cli(app, "status", res.id).output,
        timeout=10,
        message="the worker in the status",
    )
    assert "state    STARTED" in cli(app, "status", res.id).output  # track_started


def test_status_watch_follows_progress_until_ready(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        res = add.delay(1, 1)
    result = cli(app, "status", res.id, "--watch", "--interval", "0.05")
    assert result.exit_code == 0 and "SUCCESS" in result.output


def test_progress_bar_rendering():
    from flask_taskq.cli.status import _bar

    assert _bar(3, 10, width=10) == "[###.......] 3/10 (30%)"
