"""Workflows and beat through the store seam (issue 14): chord, group, chain, the
workflow graph and beat, each run on ``memory://`` (the app's own worker threads, the
memory store) and on a real redis-server (a worker process, the Redis store)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_taskq import ChordError, chord, group, signals
from flask_taskq import workflow_graph as wg
from flask_taskq.beat import Beat
from flask_taskq.result import AsyncResult
from flask_taskq.store.workflows import Fired, Outgoing
from tests.apps.flows_app import add, collect, create_app, fail, mul, stamp
from tests.conftest import Transport, wait_until

APP = "tests.apps.flows_app:create_app"


@pytest.fixture
def flows(transport: Transport) -> Iterator[Flask]:
    """The flows app on ``transport``, with a worker running its tasks."""
    app = create_app(**transport.config())
    transport.worker(app=APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    with app.app_context():
        yield app


def test_chord_callback_gets_every_member_value(flows):
    res = chord([add.s(i, i) for i in range(3)], collect.s()).delay()
    assert res.get(timeout=20) == [0, 2, 4]


def test_a_failed_member_fails_the_chord(flows):
    res = chord([add.s(1, 1), fail.s(2), add.s(3, 3)], collect.s()).delay()
    with pytest.raises(ChordError, match=r"flows\.fail"):
        res.get(timeout=20)


def test_group_get_returns_every_value(flows):
    res = group(mul.s(i, 10) for i in range(4)).delay()
    assert res.get(timeout=20) == [0, 10, 20, 30]


def test_chain_passes_each_value_on(flows):
    res = (add.s(1, 2) | mul.s(10) | add.s(5)).delay()
    assert res.get(timeout=20) == 35
    assert res.parent.get(timeout=5) == 30


def test_workflow_graph_is_recorded_and_loaded_with_states(flows):
    state = flows.extensions["taskq"]
    res = (add.s(1, 1) | chord([mul.s(2), mul.s(3)], collect.s())).delay()
    assert res.get(timeout=20) == [4, 6]
    header = res.parent
    member = header.results[0].id
    assert wg.workflow_id_of(state, member) == res.id
    doc = wg.load(state, member)
    assert doc is not None and doc["id"] == res.id and doc["size"] == 4

    def settled() -> dict[str, Any] | None:
        shown = wg.with_states(state, doc)
        return shown if shown["counts"] == {"SUCCESS": 4} else None

    shown = wait_until(settled, timeout=10, message="every task SUCCESS")
    assert shown["state"] == "SUCCESS"
    assert [d["id"] for d in wg.recent(state)] == [res.id]


def test_the_store_fires_a_chord_once_and_keeps_first_values(transport):
    """Members recorded again keep their first value; of many concurrent fire calls one
    fires (the Redis store sends the callback with it, the memory store leaves that to
    the caller)."""
    app = create_app(**transport.config())
    flows = app.extensions["taskq"].store.workflows
    assert flows.chord_member_done("c1", 0, b"a", 2, 60) is None
    assert flows.chord_member_done("c1", 0, b"again", 2, 60) is None
    assert flows.chord_member_done("c1", 1, b"b", 2, 60) == [b"a", b"b"]
    assert flows.chord_member_done("c1", 1, b"late", 2, 60) == [b"a", b"b"]
    callback = Outgoing("flows-none", 5, b"body")
    barrier = threading.Barrier(8)
    replies: list[Fired] = []

    def fire() -> None:
        barrier.wait()
        replies.append(flows.fire_chord("c1", callback, 60))

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = Fired.CLAIMED if transport.is_memory else Fired.SENT
    assert sorted(r.value for r in replies) == sorted([expected.value] + ["before"] * 7)


# -- beat -------------------------------------------------------------------------------------
@pytest.fixture
def sent_stamps() -> Iterator[list[str]]:
    """The ids of the ``flows.stamp`` tasks sent from this process."""
    ids: list[str] = []
    lock = threading.Lock()

    def note(sender: Any = None, task_id: str = "", **_: Any) -> None:
        if getattr(sender, "name", sender) == stamp.name:
            with lock:
                ids.append(task_id)

    signals.task_sent.connect(note)
    yield ids
    signals.task_sent.disconnect(note)


def test_beat_sends_each_fire_once_from_the_leader(transport, sent_stamps):
    schedule = {"tick": {"task": stamp.name, "schedule": 0.3}}
    app = create_app(**transport.config(TASKQ_BEAT_SCHEDULE=schedule))
    transport.worker(app=APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    fired: list[tuple[str, float]] = []

    def tick(sender: Any = None, sent: Any = (), **_: Any) -> None:
        fired.extend(sent)

    signals.beat_tick.connect(tick)
    beats = [Beat(app, lease=5), Beat(app, lease=5)]
    try:
        for beat in beats:
            beat.start()
        wait_until(lambda: len(sent_stamps) >= 3, timeout=20, message="3 periodic sends")
        assert sum(b.is_leader for b in beats) == 1
    finally:
        for beat in beats:
            beat.stop(timeout=5)
        signals.beat_tick.disconnect(tick)
    assert len(fired) == len(set(fired)) == len(sent_stamps)
    with app.app_context():
        runs = [AsyncResult(i).get(timeout=20) for i in sent_stamps]
    assert [run["entry"] for run in runs] == ["tick"] * len(runs)
    dues = [run["due"] for run in runs]
    assert len(dues) == len(set(dues))
    assert sorted(dues) == sorted(due for _, due in fired)
