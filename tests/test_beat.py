"""Beat: each due time sent once however many beats run, failover, catch-up, state in
Redis, ``inspect scheduled`` and the ``beat`` command.

Long periods run on a controllable clock (``Beat(app, clock=...)`` driven with
``step()``); leadership, failover and signals run real ``flask taskq beat`` processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import pairwise

import pytest
import redis
from flask import Flask

from flask_taskq import TaskQueue, crontab
from flask_taskq.beat import BEAT_HEADER, DYNAMIC_POLL, HANDOVER_POLL, Beat, Entry
from flask_taskq.keys import Keys
from flask_taskq.message import Message
from flask_taskq.schedules import get_timezone
from flask_taskq.serializer import JSONSerializer
from flask_taskq.signals import beat_tick
from tests.conftest import ROOT, WorkerProcess, wait_until

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
KEYS = Keys()
RECORD = "tests.apps.beat_app.record"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def make_app(redis_url: str) -> Callable[..., Flask]:
    def make(schedule: dict | None = None, tz: str = "UTC", **config) -> Flask:
        app = Flask("beat_test")
        app.config.update(
            TASKQ_BROKER_URL=redis_url,
            TASKQ_BEAT_SCHEDULE=schedule or {},
            TASKQ_TIMEZONE=tz,
            **config,
        )
        TaskQueue(app)
        return app

    return make


def sent(r: redis.Redis, queue: str = "default") -> list[Message]:
    """Every message waiting in ``queue``, highest priority first, each in sending order."""
    where = r.connection_pool.connection_kwargs
    client = redis.Redis(host=where["host"], port=where["port"], db=where.get("db", 0))
    out = []
    for stream in KEYS.streams(queue):
        for _, fields in client.xrange(stream):
            out.append(Message.from_bytes(fields[b"m"], JSONSerializer()))
    return out


def fires(r: redis.Redis, queue: str = "default") -> list[tuple[str, float]]:
    """``(entry, due)`` of every beat message in ``queue``, in sending order."""
    return [
        (m.headers[BEAT_HEADER]["entry"], m.headers[BEAT_HEADER]["due"]) for m in sent(r, queue)
    ]


# -- one beat, controllable clock ---------------------------------------------------------------
def test_interval_entry_is_sent_once_per_due_time(make_app, r):
    app = make_app(
        {
            "add": {
                "task": "app.add",
                "schedule": 10.0,
                "args": (2, 3),
                "kwargs": {"z": 1},
                "options": {"queue": "periodic", "expires": 30},
            }
        }
    )
    clock = Clock()
    beat = Beat(app, clock=clock)
    assert beat.step() <= beat.lease / 3  # registers the entry; nothing due yet
    assert beat.is_leader and fires(r, "periodic") == []
    clock.advance(9.9)
    beat.step()
    assert fires(r, "periodic") == []
    clock.advance(0.1)
    assert beat.step() == pytest.approx(min(10.0, beat.lease / 3, DYNAMIC_POLL), abs=0.1)
    beat.step()  # the same due time again: nothing new
    clock.advance(10)
    beat.step()
    assert fires(r, "periodic") == [("add", T0 + 10), ("add", T0 + 20)]
    message = sent(r, "periodic")[0]
    assert (message.task, message.args, message.kwargs) == ("app.add", (2, 3), {"z": 1})
    assert message.expires == pytest.approx(time.time() + 30, abs=5)
    state = r.hgetall(KEYS.beat_entry("add"))
    assert state["last"] == state["run_due"] == str(int(T0 + 20))
    assert state["task"] == "app.add" and state["since"] == str(int(T0))


def test_wait_is_until_the_next_due_time_or_renewal(make_app, r):
    app = make_app({"soon": {"task": "t", "schedule": 1.0}})
    clock = Clock()
    beat = Beat(app, clock=clock, lease=30)
    assert beat.step() == pytest.approx(min(1.0, DYNAMIC_POLL), abs=0.05)
    clock.advance(0.75)
    assert beat.step() == pytest.approx(0.25, abs=0.05)
    idle = Beat(make_app({}), clock=clock, lease=30)
    idle.release()
    beat.release()
    assert idle.step() == pytest.approx(DYNAMIC_POLL, abs=0.1)  # nothing due: looks for changes


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("one", [T0 + 600]),
        ("none", []),
        ("all", [T0 + 60 * i for i in range(1, 11)]),
    ],
)
def test_restart_after_a_gap_catches_up_as_asked(make_app, r, catch_up, expected):
    schedule = {"job": {"task": "t", "schedule": 60, "catch_up": catch_up}}
    clock = Clock()
    first = Beat(make_app(schedule), clock=clock)
    first.step()
    first.release()  # stopped; ten due times pass
    clock.advance(630)
    second = Beat(make_app(schedule), clock=clock)
    second.step()
    second.step()
    assert [due for _, due in fires(r)] == expected
    clock.advance(30)  # the schedule goes on in its rhythm
    second.step()
    assert [due for _, due in fires(r)] == [*expected, T0 + 660]


def test_crontab_catch_up_after_days_down_sends_one_run(make_app, r):
    schedule = {"report": {"task": "t", "schedule": crontab(minute=0, hour=9)}}
    clock = Clock(T0)  # 15:06 UTC
    first = Beat(make_app(schedule), clock=clock)
    first.step()
    first.release()
    clock.advance(5 * 86400)
    second = Beat(make_app(schedule), clock=clock)
    second.step()
    latest_nine = T0 - (6 * 3600 + 6 * 60 + 40) + 5 * 86400
    assert fires(r) == [("report", latest_nine)]


def test_catch_up_none_still_sends_a_run_that_is_on_time(make_app, r):
    clock = Clock()
    beat = Beat(make_app({"job": {"task": "t", "schedule": 60, "catch_up": "none"}}), clock=clock)
    beat.step()
    clock.advance(60.5)  # half a second late: on time
    beat.step()
    clock.advance(62)  # two seconds late: missed, skipped
    beat.step()
    clock.advance(58)
    beat.step()
    assert fires(r) == [("job", T0 + 60), ("job", T0 + 180)]


def test_new_and_changed_entries_count_from_now_and_removed_ones_go(make_app, r):
    clock = Clock()
    old = Beat(
        make_app({"a": {"task": "t", "schedule": 10}, "b": {"task": "t", "schedule": 10}}),
        clock=clock,
    )
    old.step()
    clock.advance(10)
    old.step()
    old.release()
    assert r.smembers(KEYS.beat_entries()) == {"a", "b"}
    clock.advance(100)  # a's old schedule missed ten runs meanwhile
    new = Beat(
        make_app({"a": {"task": "t", "schedule": 30}, "c": {"task": "t", "schedule": 5}}),
        clock=clock,
    )
    new.step()
    assert r.smembers(KEYS.beat_entries()) == {"a", "c"}
    assert not r.exists(KEYS.beat_entry("b"))
    assert fires(r) == [("a", T0 + 10), ("b", T0 + 10)]  # no catch-up for a changed entry
    clock.advance(30)
    new.step()
    assert fires(r)[2:] == [("a", T0 + 140), ("c", T0 + 140)]


def test_a_follower_never_sends_and_takes_over_where_the_leader_stopped(make_app, r):
    schedule = {"job": {"task": "t", "schedule": 10}}
    clock = Clock()
    leader, follower = Beat(make_app(schedule), clock=clock), Beat(make_app(schedule), clock=clock)
    leader.step()
    assert follower.step() <= HANDOVER_POLL + 0.01 and not follower.is_leader
    for _ in range(3):
        clock.advance(10)
        follower.step()
        leader.step()
        follower.step()
    leader.release()
    follower.step()
    assert follower.is_leader
    clock.advance(10)
    follower.step()
    leader.step()
    assert [due for _, due in fires(r)] == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]


def test_a_beat_that_lost_its_lease_cannot_send(make_app, r):
    clock = Clock()
    beat = Beat(make_app({"job": {"task": "t", "schedule": 10}}), clock=clock)
    beat.step()
    r.set(KEYS.beat_lease(), "someone-else", px=60_000)  # it expired and was taken
    clock.advance(10)
    beat.step()
    assert fires(r) == [] and not beat.is_leader
    assert r.get(KEYS.beat_lease()) == "someone-else"


def test_the_per_fire_key_stops_a_second_send(make_app, r):
    clock = Clock()
    beat = Beat(make_app({"job": {"task": "t", "schedule": 10}}), clock=clock)
    beat.step()
    r.set(KEYS.beat_fired("job", str(int(T0 + 10))), "earlier", ex=60)
    clock.advance(10)
    beat.step()
    clock.advance(10)
    beat.step()
    assert fires(r) == [("job", T0 + 20)]


def test_registry_lost_with_redis_data_is_rebuilt(make_app, r):
    clock = Clock()
    beat = Beat(make_app({"job": {"task": "t", "schedule": 10}}), clock=clock)
    beat.step()
    r.flushall()
    clock.advance(10)
    for _ in range(3):
        beat.step()
    assert beat.is_leader and r.sismember(KEYS.beat_entries(), "job")
    clock.advance(10)
    beat.step()
    assert fires(r) == [("job", T0 + 20)]


def test_beat_tick_signal(make_app, r):
    clock = Clock()
    beat = Beat(make_app({"job": {"task": "t", "schedule": 10}}), clock=clock)
    ticks = []

    def receive(sender, **kw):
        ticks.append((sender, kw["sent"]))

    beat_tick.connect(receive)
    try:
        beat.step()
        clock.advance(10)
        beat.step()
    finally:
        beat_tick.disconnect(receive)
    assert ticks == [(beat, []), (beat, [("job", T0 + 10)])]


def test_routes_and_priorities_apply(make_app, r):
    app = make_app(
        {"hi": {"task": "reports.daily", "schedule": 10, "options": {"priority": 9}}},
        TASKQ_ROUTES={"reports.*": "reports"},
    )
    clock = Clock()
    beat = Beat(app, clock=clock)
    beat.step()
    clock.advance(10)
    beat.step()
    assert r.xlen(KEYS.stream("reports", 9)) == 1


# -- declaring ----------------------------------------------------------------------------------
def test_periodic_task_and_add_periodic_task(redis_url, r):
    tq = TaskQueue()

    @tq.periodic_task(
        crontab(minute=0, hour=3), queue="maintenance", catch_up="none", options={"expires": 600}
    )
    def cleanup():
        return "done"

    tq.add_periodic_task(30, "app.add", args=(2, 2))
    tq.add_periodic_task(60, cleanup, name="twice-a-minute")
    app = Flask("declared")
    app.config.update(
        TASKQ_BROKER_URL=redis_url,
        TASKQ_BEAT_SCHEDULE={"twice-a-minute": {"task": "app.other", "schedule": 30}},
    )
    tq.init_app(app)
    assert cleanup() == "done" and cleanup.options["queue"] == "maintenance"
    entries = tq.periodic_entries(app)
    assert set(entries) == {cleanup.name, "app.add(2, 2)", "twice-a-minute"}
    assert entries[cleanup.name].catch_up == "none"
    assert entries[cleanup.name].options == {"expires": 600}
    assert entries["twice-a-minute"].task == "app.other"  # config wins
    clock = Clock(T0 - T0 % 86400 + 3 * 3600 - 1)
    beat = Beat(app, clock=clock)
    beat.step()
    clock.advance(1)
    beat.step()
    assert fires(r, "maintenance") == [(cleanup.name, clock.now)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"task": "t"}, "missing schedule"),
        ({"schedule": 1}, "missing task"),
        ({"task": "t", "schedule": 1, "relative": True}, "unknown key.*relative"),
        ({"task": "t", "schedule": "often"}, "a schedule is a number"),
        ({"task": "t", "schedule": 0}, "must be positive"),
        ({"task": "t", "schedule": 1, "catch_up": "some"}, "catch_up must be one of"),
        ({"task": "t", "schedule": 1, "options": {"task_id": "x"}}, "task_id cannot be used"),
        ({"task": "t", "schedule": 1, "options": {"contdown": 1}}, "contdown cannot be used"),
        ("t every second", "must be a dict"),
    ],
)
def test_bad_entries_are_named(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        Entry.from_config("nightly", spec)
    assert "nightly" in str(info.value)


# -- inspect scheduled --------------------------------------------------------------------------
def test_inspect_scheduled(make_app, r):
    app = make_app(
        {
            "every-minute": {"task": "app.tick", "schedule": 60},
            "daily": {"task": "app.report", "schedule": crontab(0, 9), "catch_up": "all"},
        },
        tz="Europe/Berlin",
    )
    clock = Clock(time.time() - 90)
    beat = Beat(app, clock=clock)
    beat.step()
    clock.advance(60)
    beat.step()
    with app.app_context():
        app.extensions["taskq"].taskqueue.send_task("app.later", countdown=3600)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["taskq", "inspect", "scheduled"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Periodic tasks (times in Europe/Berlin):" in out
    assert "NAME" in out and "NEXT RUN" in out and "CATCH UP" in out
    assert "every 60s" in out and "0 9 * * *" in out
    assert f"Beat: led by {beat.token}" in out
    assert "Delayed tasks: 1" in out
    data = json.loads(runner.invoke(args=["taskq", "inspect", "scheduled", "--json"]).output)
    rows = {row["name"]: row for row in data["periodic"]}
    tz = get_timezone("Europe/Berlin")
    assert rows["every-minute"]["last_run"] == datetime.fromtimestamp(int(clock.now), tz).isoformat(
        timespec="seconds"
    )
    assert rows["every-minute"]["next_run"].endswith(("+01:00", "+02:00"))
    assert rows["daily"]["last_run"] is None
    assert rows["daily"]["next_run"][11:19] == "09:00:00"
    assert data["beat_leader"] == beat.token and data["delayed_total"] == 1
    assert data["delayed"][0] == {
        "queue": "default",
        "delayed": 1,
        "next_due": data["delayed_next_due"],
    }
    beat.release()
    summary = runner.invoke(args=["taskq", "inspect"]).output
    assert "Beat: none is running" in summary


# -- the beat command ---------------------------------------------------------------------------
def run_flask(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "tests.apps.beat_app:create_app", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASKQ_BROKER_URL": "redis://127.0.0.1:1/0"}, "cannot reach Redis at"),
        ({"TASKQ_TIMEZONE": "Nowhere/Special"}, "not a known IANA time zone"),
        (
            {"BEAT_TEST_SCHEDULE": json.dumps({"x": {"task": "t", "schedule": -1}})},
            "TASKQ_BEAT_SCHEDULE['x']: an interval must be positive",
        ),
        ({"TASKQ_BROKER_URL": "memory://"}, "beat needs a Redis broker"),
    ],
)
def test_beat_command_errors_are_one_line(redis_url, env, message):
    result = run_flask("taskq", "beat", env={"TASKQ_BROKER_URL": redis_url, **env})
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- real processes -----------------------------------------------------------------------------
def test_a_one_second_entry_fires_five_times_in_five_seconds(make_app, r):
    app = make_app({"tick": {"task": "t", "schedule": 1.0}})
    beat = Beat(app)
    beat.start()
    try:
        wait_until(lambda: r.exists(KEYS.beat_entry("tick")), message="beat registered")
        started = time.time()
        time.sleep(5.0)  # time passing is what is tested
        count = len(fires(r))
    finally:
        beat.stop(timeout=5)
    assert 4 <= count <= 6
    dues = [due for _, due in fires(r)]
    assert all(b - a == pytest.approx(1.0) for a, b in pairwise(dues))
    assert abs(dues[0] - (started + 1)) < 0.5
    assert not r.exists(KEYS.beat_lease())  # stopping gave the lease up


TICK = {"tick": {"task": RECORD, "schedule": 0.5, "catch_up": "all"}}


@pytest.fixture
def start_beat(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``flask taskq beat`` processes of ``tests.apps.beat_app``; each has logged
    "ready" when returned."""
    started: list[WorkerProcess] = []

    def start(
        schedule: dict,
        lease: float = 3.0,
        broker_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        full_env = {
            **os.environ,
            "TASKQ_BROKER_URL": broker_url or redis_url,
            "PYTHONUNBUFFERED": "1",
            "BEAT_TEST_SCHEDULE": json.dumps(schedule),
            **(env or {}),
        }
        cmd = [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.apps.beat_app:create_app",
            "taskq",
            "beat",
            "-l",
            "info",
            "--lease",
            str(lease),
        ]
        beat = WorkerProcess(cmd, full_env)
        started.append(beat)
        beat.wait_for_log(" ready")
        return beat

    yield start
    for beat in started:
        if beat.proc.poll() is None:
            beat.kill_group()


def test_beat_logfile_gets_its_log(redis_url, r, tmp_path):
    """``flask taskq beat -f PATH`` appends its log to PATH (Celery's ``beat --logfile``);
    its output then holds only the summary it prints at the start."""
    log = tmp_path / "beat.log"
    log.write_text("kept\n")
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
        "BEAT_TEST_SCHEDULE": json.dumps(TICK),
    }
    app = "tests.apps.beat_app:create_app"
    beat = WorkerProcess(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            app,
            "taskq",
            "beat",
            "-l",
            "info",
            "-f",
            str(log),
        ],
        env,
    )
    try:
        wait_until(lambda: "leads now" in log.read_text(), message="the lead in the log file")
        wait_until(lambda: len(fires(r)) >= 2, message="2 fires")
        beat.signal(signal.SIGTERM)
        assert beat.wait(timeout=10) == 0
    finally:
        if beat.proc.poll() is None:
            beat.kill_group()
        beat.close()
    text = log.read_text()
    assert text.startswith("kept\n") and " ready" in text
    assert "leads now" not in beat.log and " ready" not in beat.log


def test_beat_logfile_that_cannot_be_opened_is_a_one_line_error(redis_url):
    result = run_flask(
        "taskq", "beat", "-f", "/no/such/dir/beat.log", env={"TASKQ_BROKER_URL": redis_url}
    )
    assert result.returncode == 1
    assert "cannot open log file /no/such/dir/beat.log" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def leads(beat: WorkerProcess) -> int:
    return beat.log.count("leads now")


def assert_each_due_time_once(dues: list[float], step: float = 0.5) -> None:
    counts = Counter(dues)
    assert max(counts.values()) == 1, f"sent twice: {[d for d, n in counts.items() if n > 1]}"
    ordered = sorted(dues)
    gaps = [b - a for a, b in pairwise(ordered)]
    assert all(g == pytest.approx(step) for g in gaps), f"missed due times: {gaps}"


@pytest.mark.parametrize("count", [2, 3])
def test_several_beats_send_each_due_time_once(start_beat, r, count):
    beats = [start_beat(TICK, lease=10) for _ in range(count)]
    wait_until(lambda: len(fires(r)) >= 8, timeout=20, message="8 fires")
    for beat in beats:
        beat.signal(signal.SIGTERM)
    for beat in beats:
        assert beat.wait(timeout=10) == 0
    assert sum(leads(b) for b in beats) == 1  # one leader all along
    assert_each_due_time_once([due for _, due in fires(r)])


def test_sigkill_of_the_leader_fails_over_within_the_lease(start_beat, r):
    lease = 2.0
    beats = [start_beat(TICK, lease=lease) for _ in range(3)]
    wait_until(lambda: len(fires(r)) >= 4, timeout=20, message="4 fires")
    leader = next(b for b in beats if leads(b))
    leader.kill_group()
    killed = time.monotonic()
    others = [b for b in beats if b is not leader]
    wait_until(
        lambda: any(leads(b) for b in others),
        timeout=lease + 5,
        interval=0.01,
        message="a new leader",
    )
    assert time.monotonic() - killed <= lease + 4.0  # generous: a loaded CI machine
    before = len(fires(r))
    wait_until(lambda: len(fires(r)) >= before + 4, timeout=20, message="fires go on")
    for beat in others:
        beat.signal(signal.SIGTERM)
        assert beat.wait(timeout=10) == 0
    assert sum(leads(b) for b in others) >= 1  # under load the lead may change again
    assert_each_due_time_once([due for _, due in fires(r)])  # caught up, none twice


def test_sigstop_of_the_leader_fails_over_and_it_sends_nothing_when_resumed(start_beat, r):
    """A frozen leader (a stopped VM, a long pause) is replaced within its lease; when it
    wakes it finds it no longer leads, and no due time is sent twice or skipped."""
    lease = 2.0
    beats = [start_beat(TICK, lease=lease) for _ in range(2)]
    wait_until(lambda: len(fires(r)) >= 4, timeout=20, message="4 fires")
    leader = next(b for b in beats if leads(b))
    other = next(b for b in beats if b is not leader)
    leader.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_until(
            lambda: leads(other), timeout=lease + 5, interval=0.01, message="the other beat to lead"
        )
        assert time.monotonic() - stopped <= lease + 4.0  # generous: a loaded CI machine
        before = len(fires(r))
        wait_until(lambda: len(fires(r)) >= before + 2, timeout=20, message="fires go on")
    finally:
        leader.signal(signal.SIGCONT)
    leader.wait_for_log("lost the lease")
    before = len(fires(r))
    wait_until(lambda: len(fires(r)) >= before + 3, timeout=20, message="fires after resume")
    for beat in beats:
        beat.signal(signal.SIGTERM)
    for beat in beats:
        assert beat.wait(timeout=10) == 0
    assert_each_due_time_once([due for _, due in fires(r)])


def test_sigterm_hands_the_lead_over_at_once(start_beat, r):
    beats = [start_beat(TICK, lease=30) for _ in range(2)]
    wait_until(lambda: len(fires(r)) >= 3, timeout=20, message="3 fires")
    leader = next(b for b in beats if leads(b))
    other = next(b for b in beats if b is not leader)
    leader.signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert leader.wait(timeout=5) == 0
    assert "gave up the lease" in leader.log
    wait_until(lambda: leads(other), timeout=10, interval=0.01, message="handover")
    assert time.monotonic() - stopped < 3.0  # not the 30 s lease
    before = len(fires(r))
    wait_until(lambda: len(fires(r)) >= before + 3, timeout=20, message="fires go on")
    other.signal(signal.SIGTERM)
    assert other.wait(timeout=10) == 0
    assert_each_due_time_once([due for _, due in fires(r)])


def test_beat_rides_out_a_redis_restart(own_redis, start_beat):
    client = own_redis.client()
    beat = start_beat(TICK, lease=2, broker_url=own_redis.url)
    wait_until(lambda: len(fires(client)) >= 2, timeout=20, message="2 fires")
    own_redis.stop()
    beat.wait_for_log("Redis unreachable")
    own_redis.start()  # same port, no data
    beat.wait_for_log("Reconnected to Redis")
    wait_until(lambda: len(fires(client)) >= 3, timeout=20, message="fires after restart")
    assert beat.proc.poll() is None
    beat.signal(signal.SIGTERM)
    assert beat.wait(timeout=10) == 0


def test_worker_with_embedded_beat(start_worker, r):
    schedule = {"tick": {"task": RECORD, "schedule": 0.5}}
    worker = start_worker(
        "-P",
        "threads",
        "-c",
        "2",
        "--beat",
        app="tests.apps.beat_app:create_app",
        env={"BEAT_TEST_SCHEDULE": json.dumps(schedule)},
    )
    wait_until(lambda: r.llen("test:beat:runs") >= 3, timeout=20, message="3 runs")
    assert r.lindex("test:beat:runs", 0).startswith("tick ")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert not r.exists(KEYS.beat_lease())
    runs = r.lrange("test:beat:runs", 0, -1)
    assert len(runs) == len(set(runs))


def test_embedded_beat_hands_over_at_the_first_signal(start_worker, r, redis_url, monkeypatch):
    """SIGTERM releases the embedded beat's lease at once, while running tasks finish."""
    schedule = {"tick": {"task": RECORD, "schedule": 3600}}
    worker = start_worker(
        "-P",
        "solo",
        "--beat",
        app="tests.apps.beat_app:create_app",
        env={"BEAT_TEST_SCHEDULE": json.dumps(schedule)},
    )
    wait_until(lambda: r.exists(KEYS.beat_lease()), message="the lease taken")
    import os

    from tests.apps import beat_app

    os.environ["TASKQ_BROKER_URL"] = redis_url
    app = beat_app.create_app()
    with app.app_context():
        beat_app.linger.delay(3)
    wait_until(lambda: r.exists("test:beat:lingering"), message="the task running")
    worker.signal(signal.SIGTERM)
    wait_until(
        lambda: not r.exists(KEYS.beat_lease()),
        timeout=2,
        message="the lease released before the task ends",
    )
    assert worker.proc.poll() is None  # still finishing its task
    assert worker.wait(timeout=20) == 0


def test_beat_thread_stops_promptly(make_app):
    beat = Beat(make_app({"slow": {"task": "t", "schedule": 3600}}))
    thread = beat.start()
    wait_until(lambda: beat.is_leader, message="leader")
    started = time.monotonic()
    beat.stop(timeout=5)
    # generous for a loaded machine, yet far below the 3,600 s it would otherwise sleep
    assert not thread.is_alive() and time.monotonic() - started < 4.0


def test_a_raising_beat_tick_receiver_does_not_stop_beat(make_app, r):
    clock = Clock()
    beat = Beat(make_app({"job": {"task": "t", "schedule": 10}}), clock=clock)

    def broken(sender, **kw):
        raise RuntimeError("receiver bug")

    beat_tick.connect(broken)
    try:
        beat.step()
        clock.advance(10)
        assert beat.step() > 0
    finally:
        beat_tick.disconnect(broken)
    assert fires(r) == [("job", T0 + 10)]
