"""Task events (issue 20 item 5): each outcome publishes its event to the capped stream
``taskq:events``, ``flask taskq events`` tails it, and ``worker -E`` turns events on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT, free_port, wait_until

APP = "tests.apps.events_app:create_app"


def _events(r) -> list[dict[str, str]]:
    return [{"stream_id": i, **f} for i, f in r.xrange("taskq:events")]


def _of(r, task_id: str) -> list[str]:
    """The types of ``task_id``'s events: ``task-sent`` first, then the worker's in stream
    order (the sender and the worker publish independently, so the stream may hold the
    sender's event after the worker's first ones; ``ts`` says when each happened)."""
    return _sent_first([e["type"] for e in _events(r) if e["id"] == task_id])


def _sent_first(types: list[str]) -> list[str]:
    return [t for t in types if t == "task-sent"] + [t for t in types if t != "task-sent"]


@pytest.fixture
def events_app(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.delenv("TASKQ_TEST_EVENTS", raising=False)
    from tests.apps.events_app import create_app

    return create_app()


def test_each_outcome_publishes_its_event(events_app, start_worker, r):
    from tests.apps.events_app import boom, doomed, ok

    start_worker("-P", "threads", "-c", "2", app=APP)
    with events_app.app_context():
        done = ok.delay(1)
        failed = boom.delay("bad input")
        dead = doomed.delay("tok")
        revoked = ok.apply_async((2,), countdown=1.0)
        revoked.revoke()
        assert done.get(timeout=15) == 1

    expected = {
        done.id: ["task-sent", "task-started", "task-succeeded"],
        failed.id: ["task-sent", "task-started", "task-failed"],
        dead.id: [
            "task-sent",
            "task-started",
            "task-retried",
            "task-started",
            "task-failed",
            "task-dead-lettered",
        ],
        revoked.id: ["task-sent", "task-revoked"],
    }
    for task_id, types in expected.items():
        wait_until(lambda i=task_id, t=types: _of(r, i) == t, 15, message=f"events {types}")

    by = {(e["id"], e["type"]): e for e in _events(r)}
    succeeded = by[(done.id, "task-succeeded")]
    assert succeeded["task"] == "tests.apps.events_app.ok"
    assert succeeded["queue"] == "default"
    assert float(succeeded["runtime"]) >= 0
    assert "@" in succeeded["hostname"]
    assert abs(float(succeeded["ts"]) - time.time()) < 60
    assert by[(failed.id, "task-failed")]["exception"] == "ValueError: bad input"
    retried = by[(dead.id, "task-retried")]
    assert retried["exception"].startswith("KeyError")
    assert float(retried["eta"]) > 0
    assert "retries exhausted" in by[(dead.id, "task-dead-lettered")]["reason"]
    assert by[(revoked.id, "task-revoked")]["reason"] == "revoked"
    assert by[(revoked.id, "task-sent")]["eta"].partition(".")[2].isdigit()
    assert len(by[(revoked.id, "task-sent")]["eta"].partition(".")[2]) == 6


def test_stream_is_capped(redis_url, monkeypatch, r):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_TEST_EVENTS_MAXLEN", "100")
    from flask_taskq import events
    from tests.apps.events_app import create_app, ok

    app = create_app()
    with app.app_context():
        results = ok.delay_many([i] for i in range(2000))
        last = ok.delay(-1)
        events.sender(app.extensions["taskq"]).flush()
    assert len(results) == 2000
    # MAXLEN ~ trims whole stream nodes (100 entries each by default): about 100 kept
    assert r.xlen("taskq:events") <= 300
    newest = r.xrevrange("taskq:events", count=1)[0][1]
    assert newest["id"] == last.id and newest["type"] == "task-sent"


def test_events_off_publishes_nothing_on_send(redis_url, monkeypatch, r):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_TEST_EVENTS", "0")
    from tests.apps.events_app import create_app, ok

    app = create_app()
    with app.app_context():
        ok.delay(1)
        ok.apply_async((2,), countdown=5)
        ok.delay_many([[3], [4]])
    assert r.exists("taskq:events") == 0


def test_worker_flag_turns_events_on(redis_url, monkeypatch, start_worker, r):
    """``-E`` publishes the worker's events although TASKQ_EVENTS is off (the sender,
    with it off, publishes no task-sent)."""
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_TEST_EVENTS", "0")
    from tests.apps.events_app import create_app, ok

    start_worker("-P", "threads", "-c", "1", "-E", app=APP, env={"TASKQ_TEST_EVENTS": "0"})
    app = create_app()
    with app.app_context():
        result = ok.delay(7)
        assert result.get(timeout=15) == 7
    wait_until(lambda: "task-succeeded" in _of(r, result.id), 15, message="worker events")
    assert _of(r, result.id) == ["task-started", "task-succeeded"]


def _cli(redis_url: str, *args: str, broker: str | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": broker or redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "events", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Lines:
    """The lines a process writes to one of its pipes, read by a thread."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append(line)


def test_cli_tails_a_running_worker(events_app, start_worker, redis_url):
    from tests.apps.events_app import ok

    start_worker("-P", "threads", "-c", "2", app=APP)
    as_json = _cli(redis_url, "--json")
    human = _cli(redis_url)
    try:
        outs = [(Lines(p.stdout), Lines(p.stderr)) for p in (as_json, human)]
        for _, err in outs:
            wait_until(lambda err=err: any("Tailing" in x for x in err.lines), 20, message="tail")
        with events_app.app_context():
            result = ok.delay(42)
            assert result.get(timeout=15) == 42

        def printed_json():
            rows = [json.loads(x) for x in outs[0][0].lines]
            return _sent_first([row["type"] for row in rows if row["id"] == result.id])

        wait_until(lambda: len(printed_json()) == 3, 15, message="JSON events")
        assert printed_json() == ["task-sent", "task-started", "task-succeeded"]
        wait_until(
            lambda: any(
                "task-succeeded" in x and f"tests.apps.events_app.ok[{result.id}]" in x
                for x in outs[1][0].lines
            ),
            15,
            message="human events",
        )
        for proc in (as_json, human):
            proc.send_signal(signal.SIGINT)
        for proc, (_, err) in zip((as_json, human), outs, strict=True):
            assert proc.wait(15) == 0
            assert not any("Traceback" in x for x in err.lines), err.lines
    finally:
        for proc in (as_json, human):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    "broker, expected",
    [
        (f"redis://127.0.0.1:{free_port()}/0", "cannot reach the events stream's Redis"),
        ("memory://", "use a Redis broker or store"),
    ],
    ids=["unreachable", "memory"],
)
def test_cli_one_line_errors(redis_url, broker, expected):
    proc = _cli(redis_url, broker=broker)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], err
    assert out == ""


def test_memory_broker_keeps_events_in_process(monkeypatch):
    """On memory:// the in-process worker's events and the sends' go to a stream of the
    app's own process, readable with ``state.store.events.read``."""
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    from flask_taskq import events
    from tests.apps.events_app import create_app, ok

    app = create_app()
    state = app.extensions["taskq"]
    with app.app_context():
        result = ok.delay(5)
        assert result.get(timeout=15) == 5
    store = state.store.events
    assert store.shared is False

    def types():
        events.sender(state).flush()
        rows = store.read("0-0", 100, 0.1)
        return _sent_first([f["type"] for _, f in rows if f["id"] == result.id])

    wait_until(lambda: len(types()) == 3, 15, message="in-process events")
    assert types() == ["task-sent", "task-started", "task-succeeded"]


def test_odd_text_does_not_block_the_stream(redis_url, monkeypatch, r):
    """An event whose text holds a lone surrogate (an exception message decoded with
    ``surrogateescape``) is written with it escaped, and the events after it too."""
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from flask_taskq import events
    from tests.apps.events_app import create_app

    app = create_app()
    publisher = events.sender(app.extensions["taskq"])
    publisher.emit("task-failed", "id-1", "t", "default", exception="bad \udc80 byte, ok ☃")
    publisher.emit("task-failed", "id-2", "t", "default", exception="emoji 😀")
    assert publisher.flush()
    rows = {f["id"]: f for _, f in r.xrange("taskq:events")}
    assert rows["id-1"]["exception"] == "bad \\udc80 byte, ok ☃"
    assert rows["id-2"]["exception"] == "emoji 😀"


def test_flush_returns_once_a_flush_on_its_way_is_written(redis_url, monkeypatch, r):
    """Before: the background thread took the first event, and a flush made meanwhile
    (at exit, by a prefork child before os._exit) found nothing left and returned while
    that event was still on its way."""
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from flask_taskq import events
    from tests.apps.events_app import create_app

    app = create_app()
    publisher = events.sender(app.extensions["taskq"])
    store = publisher.store
    publish = store.publish
    writing, release = threading.Event(), threading.Event()

    def slow_publish(rows, maxlen):
        writing.set()
        release.wait(10)
        return publish(rows, maxlen)

    monkeypatch.setattr(store, "publish", slow_publish)
    publisher.emit("task-failed", "id-1", "t", "default")
    assert writing.wait(10), "the background thread writes the event"
    threading.Timer(0.2, release.set).start()  # the write completes a little later
    assert publisher.flush()
    assert [f["id"] for _, f in r.xrange("taskq:events")] == ["id-1"]


def test_chord_callback_is_sent_too(monkeypatch):
    """The callback a chord's last member sends publishes task-sent like any send."""
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    from flask_taskq import chord, events
    from tests.apps.events_app import create_app, ok, total

    app = create_app()
    state = app.extensions["taskq"]
    with app.app_context():
        result = chord([ok.s(i) for i in range(3)], total.s()).delay()
        assert result.get(timeout=15) == 3
    store = state.store.events

    def types():
        events.sender(state).flush()
        return _sent_first(
            [f["type"] for _, f in store.read("0-0", 1000, 0.1) if f["id"] == result.id]
        )

    wait_until(lambda: len(types()) == 3, 15, message="the callback's events")
    assert types() == ["task-sent", "task-started", "task-succeeded"]


def test_prefork_child_writes_its_events_before_it_is_replaced(events_app, start_worker, r):
    """A prefork child leaves with ``os._exit`` (no atexit): it writes its buffered
    events first, so a child replaced after each task loses none."""
    from tests.apps.events_app import ok

    start_worker("-P", "prefork", "-c", "1", "--max-tasks-per-child", "1", app=APP)
    with events_app.app_context():
        results = [ok.delay(i) for i in range(3)]
        assert [res.get(timeout=30) for res in results] == [0, 1, 2]
    for res in results:
        wait_until(lambda res=res: "task-succeeded" in _of(r, res.id), 15, message="child's events")
    hosts = {e["hostname"] for e in _events(r) if e["type"] == "task-succeeded"}
    assert len(hosts) == 3  # three children, one task each


def test_a_message_dead_lettered_before_it_runs_publishes_its_event(events_app, start_worker, r):
    """Undecodable: the worker dead-letters it on arrival, outside the pipeline's hooks."""
    start_worker("-P", "threads", "-c", "2", app=APP)
    with events_app.app_context():
        broker = events_app.extensions["taskq"].broker
        broker.enqueue("default", 5, b"\x00 not an envelope")
        wait_until(
            lambda: broker.queue_stats(["default"])["default"].dead == 1,
            timeout=30,
            message="the message dead-lettered",
        )
    dead = wait_until(
        lambda: [e for e in _events(r) if e["type"] == "task-dead-lettered"],
        timeout=10,
        message="its task-dead-lettered event",
    )
    assert len(dead) == 1 and dead[0]["task"] == "?", dead
    assert "undecodable" in dead[0]["reason"] or "envelope" in dead[0]["reason"], dead
