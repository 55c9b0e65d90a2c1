"""Periodic entries changed at run time (``tq.periodic``, ``flask taskq periodic``, the
dashboard's periodic page): real ``flask taskq beat`` processes and workers where
leadership matters, the Python API on both transports with an in-process beat."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from flask_taskq import TaskQueue
from flask_taskq.beat import Beat
from flask_taskq.periodic import PeriodicError
from tests.conftest import ROOT, WorkerProcess, wait_until

APP = "tests.apps.beat_app:create_app"
RECORD = "tests.apps.beat_app.record"
RUNS = "test:beat:runs"
ADD = ("add", "x", "--task", RECORD)


def runs(r: redis.Redis, entry: str) -> list[str]:
    """Due times of ``entry`` that the record task ran, in order."""
    out = []
    for line in r.lrange(RUNS, 0, -1):
        name, due = line.split(" ", 1)
        if name == entry:
            out.append(due)
    return out


def flask_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "periodic", *args],
        env={**os.environ, "TASKQ_BROKER_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def start_beat(redis_url: str) -> Iterator[Callable[[], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        env = {**os.environ, "TASKQ_BROKER_URL": redis_url, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "flask", "--app", APP, "taskq", "beat", "-l", "info"]
        beat = WorkerProcess(cmd, env)
        started.append(beat)
        beat.wait_for_log(" ready")
        return beat

    yield start
    for beat in started:
        if beat.proc.poll() is None:
            beat.kill_group()


def test_entries_changed_while_two_beats_run(start_beat, start_worker, r, redis_url):
    start_worker("-P", "threads", "-c", "4", app=APP)
    beats = [start_beat(), start_beat()]
    wait_until(lambda: sum(b.log.count("leads now") for b in beats) == 1, message="a leader")

    added = flask_cli(
        "add", "tick", "--task", RECORD, "--every", "0.5s", "--queue", "default", url=redis_url
    )
    assert added.returncode == 0, added.stderr
    wait_until(lambda: len(runs(r, "tick")) >= 4, timeout=20, message="4 runs of tick")
    # each due time once, every half second
    dues = [float(d) for d in runs(r, "tick")]
    assert max(Counter(dues).values()) == 1
    assert all(b - a == pytest.approx(0.5) for a, b in itertools.pairwise(dues))

    leader = next(b for b in beats if "leads now" in b.log)
    assert flask_cli("pause", "tick", url=redis_url).returncode == 0
    leader.wait_for_log("(version 2)")
    count = leader.log.count("Sent periodic entry 'tick'")
    time.sleep(2.0)  # time passing (four periods) is what is tested
    assert leader.log.count("Sent periodic entry 'tick'") == count
    listing = json.loads(flask_cli("list", "--json", url=redis_url).stdout)
    row = next(e for e in listing["entries"] if e["name"] == "tick")
    assert row["paused"] and row["dynamic"] and row["next_run"] is None
    assert row["last_id"] and row["last_run"]
    wait_until(lambda: len(runs(r, "tick")) == count, message="the runs sent before the pause")

    assert flask_cli("resume", "tick", url=redis_url).returncode == 0
    wait_until(lambda: len(runs(r, "tick")) >= count + 2, timeout=20, message="runs again")

    assert flask_cli("update", "tick", "--every", "1s", url=redis_url).returncode == 0
    leader.wait_for_log("(version 4)")
    before = leader.log.count("Sent periodic entry 'tick'")
    wait_until(lambda: len(runs(r, "tick")) >= before + 4, timeout=20, message="new interval")
    later = [float(d) for d in runs(r, "tick")][-3:]
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(later))

    assert flask_cli("remove", "tick", url=redis_url).returncode == 0
    listing = json.loads(flask_cli("list", "--json", url=redis_url).stdout)
    assert "tick" not in [e["name"] for e in listing["entries"]]
    # beat forgets its state: no entry hash is left
    wait_until(lambda: not r.exists("taskq:{beat}:entry:tick"), message="state forgotten")
    dues = [float(d) for d in runs(r, "tick")]
    assert max(Counter(dues).values()) == 1


def test_run_now_sends_once(start_worker, r, redis_url):
    start_worker("-P", "threads", "-c", "2", app=APP)
    assert (
        flask_cli(
            "add", "daily", "--task", RECORD, "--cron", "0 12 * * *", url=redis_url
        ).returncode
        == 0
    )
    result = flask_cli("run", "daily", url=redis_url)
    assert result.returncode == 0, result.stderr
    task_id = re.search(r"task (\S+)\.", result.stdout).group(1)
    wait_until(lambda: len(runs(r, "daily")) == 1, message="one run")
    listing = json.loads(flask_cli("list", "--json", url=redis_url).stdout)
    row = next(e for e in listing["entries"] if e["name"] == "daily")
    assert row["last_id"] == task_id and row["next_run"].endswith(":00+00:00")
    assert row["schedule"] == "0 12 * * *"
    assert len(runs(r, "daily")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [*ADD, "--every", "5s", "--args", "[1,"],
            "--args: not valid JSON",
        ),
        (
            [*ADD, "--every", "5s", "--kwargs", "[1]"],
            "--kwargs: give a JSON object",
        ),
        (["add", "x", "--task", "no.such.task", "--every", "5s"], "unknown task 'no.such.task'"),
        (
            [*ADD, "--cron", "0 25 * * *"],
            "crontab hour: 25 is out of range",
        ),
        ([*ADD, "--cron", "0 12"], "bad cron expression"),
        ([*ADD, "--every", "soon"], "bad interval 'soon'"),
        (["pause", "nope"], "no periodic entry 'nope'"),
        (["resume", "nope"], "no periodic entry 'nope'"),
        (["remove", "nope"], "no periodic entry 'nope'"),
        (["run", "nope"], "no periodic entry 'nope'"),
    ],
)
def test_cli_errors_are_one_line(redis_url, args, message):
    result = flask_cli(*args, url=redis_url)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_flag_misuse_is_a_usage_error(redis_url):
    both = flask_cli(
        "add", "x", "--task", RECORD, "--every", "5s", "--cron", "* * * * *", url=redis_url
    )
    neither = flask_cli(*ADD, url=redis_url)
    assert both.returncode == neither.returncode == 2
    assert "Traceback" not in both.stderr + neither.stderr


def test_cli_refuses_memory_and_duplicate_names(redis_url):
    memory = subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "periodic", "list"],
        env={**os.environ, "TASKQ_BROKER_URL": "memory://"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert memory.returncode == 1 and "needs a Redis broker" in memory.stderr
    assert flask_cli(*ADD, "--every", "5s", url=redis_url).returncode == 0
    again = flask_cli(*ADD, "--every", "5s", url=redis_url)
    assert again.returncode == 1 and "exists" in again.stderr


# -- the Python API, on both transports, with an in-process beat ---------------------------------
class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(transport, **config) -> tuple[Flask, TaskQueue]:
    tq = TaskQueue()

    @tq.task(name="job")
    def job(n=0):
        return n

    app = Flask("periodic_api")
    app.config.update(
        transport.config(
            TASKQ_BEAT_SCHEDULE={"static": {"task": "job", "schedule": 60.0}}, **config
        )
    )
    tq.init_app(app)
    return app, tq


def sent_by(beat_calls: list[tuple[str, float]], name: str) -> list[float]:
    return [due for entry, due in beat_calls if entry == name]


def test_python_api_with_an_in_process_beat(transport, monkeypatch):
    app, tq = make_app(transport)
    clock = Clock()
    beat = Beat(app, clock=clock)
    sent: list[tuple[str, float]] = []
    monkeypatch.setattr(beat, "_send", lambda entry, due, task_id: None)
    from flask_taskq.signals import beat_tick

    def record(sender, **kw):
        if sender is beat:
            sent.extend(kw["sent"])

    beat_tick.connect(record)
    try:
        beat.step()
        t0 = clock.now
        tq.periodic.add("every10", "job", every="10s", args=[1], app=app)
        beat._poll_at = 0  # look at once instead of within DYNAMIC_POLL
        beat.step()
        clock.now += 10
        beat.step()
        assert sent_by(sent, "every10") == [t0 + 10]

        assert tq.periodic.pause("every10", app=app) is True
        assert tq.periodic.pause("every10", app=app) is False
        beat._poll_at = 0
        clock.now += 30
        beat.step()
        assert sent_by(sent, "every10") == [t0 + 10]

        assert tq.periodic.resume("every10", app=app) is True
        beat._poll_at = 0
        resumed = clock.now
        beat.step()
        clock.now += 10
        beat.step()
        assert sent_by(sent, "every10") == [t0 + 10, resumed + 10]

        tq.periodic.update("every10", every=3, app=app)
        beat._poll_at = 0
        changed = clock.now
        beat.step()
        clock.now += 3
        beat.step()
        assert sent_by(sent, "every10")[-1] == changed + 3

        rows = {row["name"]: row for row in tq.periodic.list(app=app)}
        assert rows["every10"]["dynamic"] and not rows["static"]["dynamic"]
        assert rows["every10"]["schedule"] == "every 3s"
        assert rows["every10"]["last_id"]

        with pytest.raises(PeriodicError, match="read-only"):
            tq.periodic.pause("static", app=app)
        with pytest.raises(PeriodicError, match="exists"):
            tq.periodic.add("static", "job", every=5, app=app)
        with pytest.raises(PeriodicError, match="unknown task"):
            tq.periodic.add("other", "nope", every=5, app=app)
        with pytest.raises(ValueError, match="bad cron"):
            tq.periodic.add("other", "job", cron="0 0", app=app)

        tq.periodic.remove("every10", app=app)
        beat._poll_at = 0
        beat.step()
        clock.now += 10
        beat.step()
        assert "every10" not in beat.entries
        assert "every10" not in {row["name"] for row in tq.periodic.list(app=app)}
        with pytest.raises(PeriodicError, match="no periodic entry"):
            tq.periodic.remove("every10", app=app)
    finally:
        beat_tick.disconnect(record)
        beat.release()


def test_run_now_through_the_api(transport):
    app, tq = make_app(transport, TASKQ_RESULT_BACKEND=transport.url)
    transport.worker(app="tests.test_periodic_dynamic:worker_app")
    tq.periodic.add("later", "job", cron="0 12 * * *", kwargs={"n": 7}, app=app)
    beat = Beat(app)
    beat.step()  # registers the entries, so the run is noted
    result = tq.periodic.run("later", app=app)
    if transport.is_memory:
        assert result.get(timeout=10) == 7
        row = next(r for r in tq.periodic.list(app=app) if r["name"] == "later")
        assert row["last_id"] == result.id and row["last_state"] == "SUCCESS"
    else:
        row = next(r for r in tq.periodic.list(app=app) if r["name"] == "later")
        assert row["last_id"] == result.id
    beat.release()


def worker_app() -> Flask:
    """Unused by the memory transport; a Redis worker runs ``job`` from this factory."""
    tq = TaskQueue()

    @tq.task(name="job")
    def job(n=0):
        return n

    app = Flask("periodic_worker")
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    tq.init_app(app)
    return app


# -- the dashboard ---------------------------------------------------------------------------------
def test_dashboard_forms(redis_url):
    from tests.test_dashboard import AUTH, create_app, get, post

    app = create_app(TASKQ_BROKER_URL=redis_url)
    client = app.test_client()
    page = "/taskq/periodic"
    fields = {
        "name": "dash-entry",
        "task": "tests.test_dashboard.add",
        "every": "30s",
        "args": "[1, 2]",
    }
    refused = client.post("/taskq/periodic/add", data=fields, headers=AUTH)
    assert refused.status_code == 400  # no CSRF token
    done = post(client, "/taskq/periodic/add", fields, page=page)
    assert done.status_code == 303
    text = get(client, page).text
    assert "dash-entry" in text and "every 30s" in text
    tq = app.extensions["taskq"].taskqueue
    assert tq.periodic.list(app=app)[0]["name"] == "dash-entry"

    bad = post(client, "/taskq/periodic/add", {**fields, "name": "b", "args": "[1,"}, page=page)
    assert bad.status_code == 303
    assert "Not valid JSON" in get(client, page).text

    for action in ("pause", "run", "resume"):
        post(client, f"/taskq/periodic/{action}", {"name": "dash-entry"}, page=page)
    row = tq.periodic.list(app=app)[0]
    assert not row["paused"] and row["last_id"]
    assert (
        "Sent periodic entry" in get(client, page).text or row["last_id"] in get(client, page).text
    )
    post(client, "/taskq/periodic/remove", {"name": "dash-entry"}, page=page)
    assert tq.periodic.list(app=app) == []
    unauthenticated = client.post("/taskq/periodic/remove", data={"name": "x"})
    assert unauthenticated.status_code == 401
