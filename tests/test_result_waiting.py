"""Waking ``get()`` without polling at no cost to results nobody waits for, and the
STARTED state (issues 19 and 20)."""

from __future__ import annotations

import threading
import time

import pytest

from flask_taskq import chain, states
from flask_taskq.backend.base import READY, STARTED
from flask_taskq.backend.memory import MemoryBackend
from flask_taskq.backend.redis import RedisBackend
from flask_taskq.serializer import get_serializer
from tests.apps.basic import CustomError, add, fail, gated
from tests.conftest import wait_until


def keys_of(r, task_id: str) -> set[str]:
    return set(r.scan_iter(match=f"taskq:result:{{{task_id}}}*"))


def blmoves(r) -> int:
    return int(r.info("commandstats").get("cmdstat_blmove", {}).get("calls", 0))


def doc(status: str, **extra) -> bytes:
    return get_serializer("json").dumps({"status": status, "task": "t", **extra})


# -- waiting -------------------------------------------------------------------------------
def test_result_nobody_waits_for_is_one_key(app, r, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        result = add.delay(2, 3)
    key = f"taskq:result:{{{result.id}}}"
    wait_until(lambda: "SUCCESS" in (r.get(key) or ""), message="the result")
    assert keys_of(r, result.id) == {key}  # no done list, no waiting mark
    with app.app_context():
        assert result.get(timeout=5) == 5  # already there: read, nothing left behind
    assert keys_of(r, result.id) == {key}


def test_get_started_before_the_result_wakes_once_it_is_written(app, r, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        result = gated.delay("w1")
    wait_until(lambda: r.get(f"taskq:result:{{{result.id}}}"), message="STARTED written")
    before = blmoves(r)
    got: list[object] = []
    with app.app_context():
        waiter = threading.Thread(target=lambda: got.append(result.get(timeout=30)))
        waiter.start()
        wait_until(lambda: blmoves(r) > before, message="the waiter blocks")
        assert r.exists(f"taskq:result:{{{result.id}}}:waiting")
        r.rpush("test:gate:w1", "go")
        waiter.join(30)
    assert got == ["w1"]
    # one blocking read, woken by the push: no polling (a second one only if the task
    # took longer than a block, MAX_BLOCK = 5 s)
    assert blmoves(r) - before <= 2
    assert not r.exists(f"taskq:result:{{{result.id}}}:waiting")  # the worker took it


def test_get_waiting_for_a_task_not_yet_run(app, r, start_worker):
    """The waiter marks itself before any document exists; the worker starts later."""
    with app.app_context():
        result = add.delay(20, 22)
    got: list[object] = []
    with app.app_context():
        waiter = threading.Thread(target=lambda: got.append(result.get(timeout=60)))
        waiter.start()
        wait_until(lambda: r.exists(f"taskq:result:{{{result.id}}}:waiting"), message="mark")
        start_worker("-P", "solo")
        waiter.join(60)
    assert got == [42]


def test_the_waiting_mark_is_read_with_the_result_in_one_step(redis_url, r):
    """No lost wake-up: whichever comes first, the write or the waiter's mark, the waiter
    either reads the final result or is woken (backend level, no worker)."""
    backend = RedisBackend(redis_url)
    try:
        backend.store_many([("late", doc("SUCCESS", result=1), READY)], 60)
        assert backend.wait("late", timeout=5)["result"] == 1
        assert keys_of(r, "late") == {"taskq:result:{late}"}

        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(backend.wait("early", 30)))
        waiter.start()
        wait_until(lambda: r.exists("taskq:result:{early}:waiting"), message="mark")
        backend.store_many([("early", doc("SUCCESS", result=2), READY)], 60)
        waiter.join(30)
        assert got and got[0]["result"] == 2
        assert r.ttl("taskq:result:{early}:done") > 0
    finally:
        backend.close()


# -- STARTED -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_started_never_replaces_a_final_result(kind, redis_url):
    backend = RedisBackend(redis_url) if kind == "redis" else MemoryBackend()
    try:
        backend.store_many([("a", doc("SUCCESS", result=1), READY)], 60)
        backend.store_many([("a", doc("STARTED"), STARTED)], 60)
        assert backend.get("a")["status"] == "SUCCESS"
        backend.store_many([("b", doc("PROGRESS"), False)], 60)  # a state it reported
        backend.store_many([("b", doc("STARTED"), STARTED)], 60)
        assert backend.get("b")["status"] == "PROGRESS"
        backend.store_many([("c", doc("RETRY"), False)], 60)  # the next attempt starts
        backend.store_many([("c", doc("STARTED"), STARTED)], 60)
        assert backend.get("c")["status"] == "STARTED"
        backend.store_many([("d", doc("STARTED"), STARTED)], 60)
        assert backend.get("d")["status"] == "STARTED"
        # in one batch, in order: the final state wins
        backend.store_many([("e", doc("STARTED"), STARTED), ("e", doc("FAILURE"), READY)], 60)
        assert backend.get("e")["status"] == "FAILURE"
    finally:
        backend.close()


def test_started_state_while_a_task_runs_on_a_worker(app, r, start_worker):
    start_worker("-P", "threads", "-c", "2")
    with app.app_context():
        result = gated.delay("s1")
        wait_until(lambda: result.state == states.STARTED, message="STARTED")
        info = result.info
        assert info["hostname"] and info["pid"] > 0
        assert info["started"] > 0
        assert not result.ready()
        r.rpush("test:gate:s1", "go")
        assert result.get(timeout=30) == "s1"
        assert result.state == states.SUCCESS


def test_track_started_off_leaves_a_running_task_pending(app, r, start_worker):
    start_worker("-P", "solo", env={"TASKQ_TRACK_STARTED": "0"})
    with app.app_context():
        result = gated.delay("s2")
        wait_until(lambda: any(c["cmd"] == "blpop" for c in r.client_list()), message="it runs")
        time.sleep(0.5)  # room for a STARTED write (due within 10 ms) that must not come
        assert result.state == states.PENDING
        r.rpush("test:gate:s2", "go")
        assert result.get(timeout=30) == "s2"


# -- chains --------------------------------------------------------------------------------
def test_long_chain_passes_each_value_on(app, start_worker):
    start_worker("-P", "solo")
    with app.app_context():
        result = chain([add.s(0, 1)] + [add.s(1) for _ in range(39)]).apply_async()
        assert result.get(timeout=60) == 40


def test_long_chain_message_does_not_carry_the_rest(app, r):
    with app.app_context():
        chain([add.s(0, 1)] + [add.s(1) for _ in range(49)]).apply_async()
    [(_, fields)] = r.xrange("taskq:{default}:p5")
    body = fields["m"]
    assert '"chain_rest"' in body
    assert len(body) < 1500  # one reference, not 49 steps (about 200 bytes each)


def test_failure_in_a_long_chain_fails_the_steps_after_it(app, start_worker):
    start_worker("-P", "solo")
    steps = [add.s(1, 1), add.s(1), fail.si("boom")] + [add.s(1) for _ in range(10)]
    with app.app_context():
        result = chain(steps).apply_async()
        with pytest.raises(CustomError):
            result.get(timeout=60)
        handles = [result]
        while handles[-1].parent is not None:
            handles.append(handles[-1].parent)
        handles.reverse()
        assert len(handles) == 13
        assert handles[1].get(timeout=5) == 3  # before the failure
        assert isinstance(handles[2].get(timeout=5, propagate=False), CustomError)
        assert handles[7].state == states.FAILURE  # never ran, failed like the chain
