"""``flask taskq inspect`` against real workers."""

from __future__ import annotations

import json

from tests.apps.basic import add, mark
from tests.conftest import wait_until


def inspect(app, *args):
    return app.test_cli_runner().invoke(args=["taskq", "inspect", *args])


def as_json(app, *args):
    result = inspect(app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_no_workers_says_so_and_exits_zero(app):
    result = inspect(app, "ping")
    assert result.exit_code == 0 and result.output == "No workers alive.\n"
    assert as_json(app, "ping") == {"workers": []}
    for sub, says in (
        ("active", "No workers alive.\n"),
        ("reserved", "No workers alive.\n"),
        ("stats", "No workers alive.\nLast hour: no task finished.\n"),
        ("failed", "No failures.\n"),
    ):
        result = inspect(app, sub)
        assert result.exit_code == 0 and result.output == says, (sub, result.output)
    result = inspect(app)
    assert result.exit_code == 0 and "Workers: none alive." in result.output


def test_ping_lists_workers_with_names_and_queues(app, start_worker):
    start_worker("-P", "solo", "-n", "alpha@test")
    start_worker("-P", "threads", "-c", "2", "-n", "beta@test", "-Q", "default,mail")
    rows = wait_until(
        lambda: len(as_json(app, "ping")["workers"]) == 2 and as_json(app, "ping")["workers"]
    )
    assert {(r["worker"], r["pool"], r["queues"]) for r in rows} == {
        ("alpha@test", "solo", "default"),
        ("beta@test", "threads", "default,mail"),
    }
    assert set(rows[0]) == {
        "worker",
        "process",
        "host",
        "pid",
        "pool",
        "queues",
        "up_s",
        "heartbeat_age_s",
    }
    text = inspect(app, "ping").output
    assert "2 worker process(es) alive" in text and "alpha@test" in text


def test_active_shows_a_running_task(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        res = mark.delay("slow", seconds=4)
    active = wait_until(
        lambda: as_json(app, "active")["active"], message="the running task in inspect active"
    )
    assert active[0]["task_id"] == res.id
    assert active[0]["task"] == "tests.apps.basic.mark"
    assert active[0]["args"] == "'slow', seconds=4"


def test_stats_count_finished_tasks(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        for res in [add.delay(i, 1) for i in range(12)]:
            res.get(timeout=10)

    def added():
        rows = [
            r for r in as_json(app, "stats")["last_hour"] if r["task"] == "tests.apps.basic.add"
        ]
        return rows and rows[0]["processed"] == 12 and rows[0]

    row = wait_until(added, message="12 processed in the stats")
    assert row["queue"] == "default" and row["failed"] == 0
    assert as_json(app, "stats")["processes"][0]["processed"] == 12


def test_queues_shows_ready_delayed_backlog_and_dead(app, r):
    with app.app_context():
        add.delay(1, 1)
        add.delay(2, 2)
        add.apply_async((3, 3), countdown=600)
    r.xadd("taskq:{default}:dead", {"reason": "test", "task": "x", "id": "y", "time": "1"})
    [row] = [q for q in as_json(app, "queues")["queues"] if q["queue"] == "default"]
    assert row == {
        "queue": "default",
        "ready": 2,
        "reserved": 0,
        "delayed": 1,
        "backlog": 3,
        "dead": 1,
        "shards": [],
        "waiting": 2,
        "paused": False,
    }


def test_registered_and_failed(app, start_worker):
    names = [row["task"] for row in as_json(app, "registered")["registered"]]
    assert "tests.apps.basic.add" in names and "tests.apps.basic.mark" in names
    start_worker("-P", "solo")
    with app.app_context():
        res = app.extensions["taskq"].taskqueue.send_task("no.such")
    rows = wait_until(lambda: as_json(app, "failed")["failed"])
    assert rows[0]["task_id"] == res.id and "not registered" in rows[0]["reason"]


def test_summary_without_a_subcommand(app, start_worker):
    start_worker("-P", "solo", "-n", "gamma@test")
    wait_until(lambda: "gamma@test" in inspect(app).output)
    output = inspect(app).output
    assert "Workers: 1 process(es) alive" in output and "Queues:" in output


def test_unreachable_redis_is_one_line(app):
    app.extensions["taskq"].broker_url = "redis://127.0.0.1:1/0"
    app.extensions["taskq"].broker = app.extensions["taskq"].new_broker()
    for sub in (
        "ping",
        "active",
        "reserved",
        "scheduled",
        "registered",
        "queues",
        "stats",
        "failed",
        "summary",
    ):
        result = inspect(app, sub)
        assert result.exit_code == 1
        assert result.output.startswith("Error: cannot reach Redis at redis://127.0.0.1:1/0")
        assert "Traceback" not in result.output
