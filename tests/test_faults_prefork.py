"""Faults of issue 13 around worker names and the prefork supervisor, with real worker
processes, real signals and a real Redis:

- two workers started with the same ``-n`` must not lose each other's tasks (item 3);
- a SIGTERM while a crashed child waits to be replaced stops the worker at once, exit 0
  (item 4);
- a task that holds the GIL for longer than the visibility timeout runs once in prefork,
  while a dead child's tasks are still taken over (item 9).
"""

from __future__ import annotations

import os
import signal
import socket

import pytest

from flask_taskq.broker.redis import RedisBroker
from flask_taskq.keys import GROUP, Keys
from flask_taskq.monitor import Monitor
from flask_taskq.store.redis.monitor import RedisMonitorStore
from flask_taskq.worker.worker import expand_name
from tests.apps.prefork_faults import hold_gil, slow
from tests.conftest import wait_until

APP = "tests.apps.prefork_faults:create_app"
#: Leases of 3 s: renewed every second, taken over after 2 s without renewal.
LEASES = {"TASKQ_VISIBILITY_TIMEOUT": "3"}


@pytest.fixture
def pf_app(redis_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.prefork_faults import create_app

    return create_app()


@pytest.fixture
def monitor(redis_server) -> Monitor:
    return Monitor(RedisMonitorStore(redis_server.client(), Keys("taskq")))


def started(r, token: str) -> int:
    return int(r.hget("pf:started", token) or 0)


# -- item 3: worker names -----------------------------------------------------------------
def test_workers_with_the_same_name_keep_each_others_tasks(pf_app, start_worker, monitor, r):
    first = start_worker("-P", "solo", "-n", "twin@%h", app=APP, env=LEASES)
    with pf_app.app_context():
        slow.delay("held", 60)
    wait_until(lambda: started(r, "held") == 1, message="the task started on the first")
    second = start_worker("-P", "solo", "-n", "twin@%h", app=APP, env=LEASES)
    procs = wait_until(
        lambda: len(monitor.processes()) == 2 and monitor.processes(),
        message="a heartbeat from each twin",
    )
    assert {p["worker"] for p in procs} == {f"twin@{socket.gethostname()}"}
    assert len({p["process"] for p in procs}) == 2
    # the second leaves the group gracefully; the first then dies holding the task
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    first.kill_group()
    start_worker("-P", "solo", app=APP, env=LEASES)
    wait_until(
        lambda: started(r, "held") == 2, timeout=20, message="the dead twin's task delivered again"
    )


def test_forget_consumer_keeps_a_consumer_that_holds_an_entry(redis_url, r):
    broker = RedisBroker(redis_url)
    stream = broker.keys.stream("default", 5)
    broker.ensure_groups(["default"])
    r.xadd(stream, {"m": "body"})
    r.xreadgroup(GROUP, "holder", {stream: ">"}, count=1)
    r.xreadgroup(GROUP, "idle", {stream: ">"}, count=1)  # nothing left: holds nothing
    broker.forget_consumer("holder", ["default"])
    broker.forget_consumer("idle", ["default"])
    consumers = {c["name"]: c["pending"] for c in r.xinfo_consumers(stream, GROUP)}
    assert consumers == {"holder": 1}
    assert r.xpending(stream, GROUP)["pending"] == 1


def test_name_fields_expand_in_every_prefork_child(start_worker, monitor):
    start_worker("-P", "prefork", "-c", "2", "-n", "pf%I@%n", app=APP)
    procs = wait_until(
        lambda: len(monitor.processes()) == 2 and monitor.processes(),
        message="a heartbeat from each child",
    )
    short = socket.gethostname().partition(".")[0]
    assert {p["worker"] for p in procs} == {f"pf-1@{short}", f"pf-2@{short}"}
    assert all(p["process"].startswith(f"{p['worker']}/") for p in procs)


def test_expand_name_fields():
    assert expand_name("w@%h", hostname="web1.example.org") == "w@web1.example.org"
    assert expand_name("%n.%d", hostname="web1.example.org") == "web1.example.org"
    assert expand_name("w%I:%i@%n", 3, hostname="web1.x") == "w-3:3@web1"
    assert expand_name("w%I:%i", hostname="h") == "w:0"
    assert expand_name("100%%", hostname="h") == "100%"
    for bad in ("w%q", "w%"):
        with pytest.raises(ValueError, match="worker name"):
            expand_name(bad, hostname="h")


def test_a_bad_name_field_is_a_one_line_error(app):
    result = app.test_cli_runner().invoke(args=["taskq", "worker", "-P", "solo", "-n", "w%q@%h"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown field %q in worker name 'w%q@%h'")
    assert "Traceback" not in result.output


# -- item 4: a stop signal while a crashed child waits to be replaced ---------------------
def test_sigterm_while_a_crashed_child_waits_to_be_replaced_exits_0(start_worker):
    worker = start_worker(
        "-P",
        "prefork",
        "-c",
        "1",
        "--shutdown-timeout",
        "10",
        app=APP,
        env={"PREFORK_CRASH_FIRST_CHILD": "1"},
        ready=0,
    )
    # the child crashed within a second of its start: its slot waits a second
    worker.wait_for_log("starting a new one")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.log
    assert "did not finish" not in worker.log


# -- item 9: leases of a child whose task holds the GIL -----------------------------------
def test_a_task_holding_the_gil_past_the_lease_runs_once(pf_app, start_worker, r):
    start_worker("-P", "prefork", "-c", "1", app=APP, env=LEASES)
    with pf_app.app_context():
        res = hold_gil.delay("gil", 8)
    wait_until(lambda: started(r, "gil") == 1, message="the task started")
    # beside it, a worker that takes over any lease left idle for 2 s
    other = start_worker("-P", "solo", app=APP, env=LEASES)
    with pf_app.app_context():
        assert res.get(timeout=60) == "gil"
    assert started(r, "gil") == 1
    assert "Took over" not in other.log


def test_a_killed_childs_task_is_still_taken_over(pf_app, start_worker, monitor, r):
    start_worker("-P", "prefork", "-c", "1", app=APP, env=LEASES)
    with pf_app.app_context():
        slow.delay("orphan", 60)
    wait_until(lambda: started(r, "orphan") == 1, message="the task started")
    [child] = wait_until(monitor.processes, message="the child's heartbeat")
    os.kill(child["pid"], signal.SIGKILL)
    # the supervisor's new child takes the dead one's lease over once it expires
    wait_until(
        lambda: started(r, "orphan") == 2,
        timeout=20,
        message="the killed child's task delivered again",
    )
