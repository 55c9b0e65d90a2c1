"""Workflows (SPEC §6): signatures, chain, group, chord, link and link_error, run by real
worker processes against a real Redis."""

from __future__ import annotations

import threading

import pytest

from flask_taskq import (
    AsyncResult,
    ChordError,
    GroupResult,
    Signature,
    chain,
    chord,
    group,
    signature,
)
from flask_taskq.exceptions import TimeoutError as TaskTimeoutError
from flask_taskq.serializer import get_serializer
from tests.apps.canvas_app import (
    Boom,
    add,
    boom,
    collect,
    double,
    errback,
    flaky_double,
    mul,
    note,
    slow_once,
    tsum,
)
from tests.conftest import wait_until

APP = "tests.apps.canvas_app:create_app"


@pytest.fixture
def capp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.canvas_app import create_app

    app = create_app()
    with app.app_context():
        yield app


@pytest.fixture
def worker(start_worker):
    return start_worker("-P", "threads", "-c", "4", app=APP)


def callback_runs(r, token):
    return int(r.hget("cv:callback_runs", token) or 0)


# -- signatures ----------------------------------------------------------------------------
def test_signature_round_trips_through_the_json_serializer():
    sig = add.s(2).set(queue="math", countdown=5, priority=7)
    sig.link(note.si("x", token="t"))
    json = get_serializer("json")
    data = json.loads(json.dumps({"sig": sig}))["sig"]
    rebuilt = signature(data)
    assert isinstance(rebuilt, Signature)
    assert rebuilt == sig
    assert (rebuilt.name, rebuilt.args, rebuilt.options["queue"]) == (add.name, [2], "math")
    assert rebuilt.options["link"][0]["immutable"] is True
    flow = signature(json.loads(json.dumps(chord([add.s(1, 1)], tsum.s()).to_dict())))
    assert isinstance(flow, chord) and flow.body.name == tsum.name


def test_signature_by_name_and_unknown_option():
    sig = signature("tests.apps.canvas_app.add", (1, 2), options={"priority": 3})
    assert sig.options == {"priority": 3}
    with pytest.raises(TypeError, match="contdown"):
        sig.set(contdown=1)
    assert add.si(1, 2).immutable and not add.s(1).immutable


def test_signature_delay_and_apply_async(capp, worker):
    assert add.s(2).delay(3).get(timeout=10) == 5
    assert add.si(2, 3).apply_async((100,)).get(timeout=10) == 5  # immutable: args ignored
    res = signature("tests.apps.canvas_app.mul", (3,)).apply_async((4,), priority=9)
    assert res.get(timeout=10) == 12


def test_signature_travels_as_an_argument(capp, worker):
    sig = add.s(10)
    assert note.delay(sig, token="arg").get(timeout=10) == sig.to_dict()


# -- chain ---------------------------------------------------------------------------------
def test_chain_passes_each_value_on(capp, worker):
    res = chain(add.s(1, 2), mul.s(10), add.s(5)).apply_async()
    assert res.get(timeout=15) == 35
    assert res.parent.get(timeout=5) == 30
    assert res.parent.parent.get(timeout=5) == 3
    assert (add.s(1, 1) | double.s() | double.s()).delay().get(timeout=15) == 8
    assert (add.s(1, 1) | add.si(7, 7)).delay().get(timeout=15) == 14


def test_a_long_chain_carries_its_rest_flat(capp, worker):
    """300 links: each message carries the steps after it as one flat list, so nothing
    recurses per step (encoding, decoding, sending the next)."""
    res = chain([add.s(0, 0)] + [add.s(1) for _ in range(299)]).apply_async()
    assert res.get(timeout=60) == 299
    assert res.parent.parent.get(timeout=5) == 297


def test_chain_failure_stops_it_and_fails_its_result(capp, worker, r):
    res = (add.s(1, 2) | boom.s() | note.s(token="never")).apply_async(
        link_error=errback.s(token="chain")
    )
    with pytest.raises(Boom, match="boom"):
        res.get(timeout=15)
    assert res.failed()
    with pytest.raises(Boom):
        res.parent.get(timeout=5)
    assert res.parent.parent.get(timeout=5) == 3
    wait_until(lambda: r.llen("cv:errback:chain") == 1)
    assert r.lrange("cv:errback:chain", 0, -1) == [res.parent.id]
    assert r.llen("cv:note:never") == 0


# -- group ---------------------------------------------------------------------------------
def test_group_keeps_member_order(capp, worker):
    res = group(double.s(i, seconds=0.05 * (5 - i)) for i in range(6)).apply_async()
    assert isinstance(res, GroupResult)
    assert res.get(timeout=15) == [0, 2, 4, 6, 8, 10]
    assert res.ready() and res.successful() and not res.failed()
    assert res.completed_count() == 6
    restored = GroupResult.restore(res.save().id)
    assert [r.id for r in restored] == [r.id for r in res]
    assert GroupResult.restore("nope") is None


def test_group_partial_failure(capp, worker):
    res = group(add.s(1, 1), boom.s(), add.s(2, 2)).delay()
    wait_until(res.ready, timeout=15)
    assert res.failed() and not res.successful()
    assert res.completed_count() == 2
    values = res.get(timeout=5, propagate=False)
    assert values[0] == 2 and values[2] == 4 and isinstance(values[1], Boom)
    with pytest.raises(Boom):
        res.get(timeout=5)


def test_group_revoke(capp, start_worker):
    res = group(add.s(i, i) for i in range(3)).delay()
    res.revoke()
    start_worker("-P", "solo", app=APP)
    wait_until(res.ready, timeout=15)
    assert [r.state for r in res] == ["REVOKED"] * 3


# -- chord ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_chord_of_100_with_two_workers(capp, start_worker, r, pool):
    start_worker("-P", pool, "-c", "2", app=APP)
    start_worker("-P", pool, "-c", "2", app=APP)
    res = chord((add.s(i, i) for i in range(100)), tsum.s(token=pool)).apply_async()
    assert res.get(timeout=60) == sum(2 * i for i in range(100))
    assert isinstance(res.parent, GroupResult) and len(res.parent) == 100
    assert callback_runs(r, pool) == 1


def test_group_or_callback_is_a_chord(capp, worker, r):
    res = (group(double.s(i) for i in range(5)) | collect.s(token="pipe")).delay()
    assert res.get(timeout=15) == [0, 2, 4, 6, 8]
    assert chord([], collect.s(token="empty")).delay().get(timeout=10) == []


def test_chord_with_retrying_members_fires_once(capp, worker, r):
    res = chord([flaky_double.s(i, failures=2) for i in range(1, 5)], tsum.s(token="retry")).delay()
    assert res.get(timeout=20) == 20
    assert callback_runs(r, "retry") == 1


def test_chord_survives_sigkill_mid_member(capp, start_worker, r):
    env = {"TASKQ_VISIBILITY_TIMEOUT": "1"}
    first = start_worker("-P", "solo", app=APP, env=env)
    res = chord([slow_once.s(1, "k", 30), double.s(2), double.s(3)], tsum.s(token="kill")).delay()
    wait_until(lambda: r.get("cv:slow_started:k"))
    first.kill_group()
    start_worker("-P", "solo", app=APP, env=env)
    assert res.get(timeout=30) == 2 + 4 + 6
    assert callback_runs(r, "kill") == 1


def test_chord_last_members_at_the_same_instant_fire_once(capp, start_worker, r):
    """Call the member hook for the last two members from two threads at once, twice
    each (as if redelivered after a crash): the callback is enqueued once."""
    from flask_taskq.worker.workflow import _chord_member_done

    state = capp.extensions["taskq"]
    body = tsum.s(token="race")
    result = body.freeze(state)
    callback = body.to_dict()
    meta = [{"id": "race", "size": 3, "index": i, "callback": callback} for i in range(3)]
    _chord_member_done(state, meta[0], 1)
    barrier = threading.Barrier(4)

    def finish(m, value):
        barrier.wait()
        _chord_member_done(state, m, value)

    threads = [threading.Thread(target=finish, args=(meta[i], 10**i)) for i in (1, 2)]
    threads += [threading.Thread(target=finish, args=(meta[i], 10**i)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _chord_member_done(state, meta[2], 100)  # a late redelivery
    assert r.xlen("taskq:{default}:p5") == 1
    start_worker("-P", "threads", "-c", "2", app=APP)
    assert result.get(timeout=10) == 111
    assert callback_runs(r, "race") == 1


def test_chord_member_failure_fails_the_chord_once(capp, worker, r):
    res = chord([add.s(1, 1), boom.s(7), add.s(2, 2), boom.s(8)], tsum.s(token="fail")).apply_async(
        link_error=errback.s(token="chord")
    )
    with pytest.raises(ChordError, match=r"tests\.apps\.canvas_app\.boom\[") as info:
        res.get(timeout=15)
    assert "Boom" in str(info.value)
    wait_until(lambda: r.llen("cv:errback:chord") >= 1)
    assert r.lrange("cv:errback:chord", 0, -1) == [res.id]
    wait_until(res.parent.ready, timeout=10)
    assert r.llen("cv:errback:chord") == 1
    assert callback_runs(r, "fail") == 0


def test_chain_into_a_chord(capp, worker):
    res = (add.s(1, 1) | group(double.s(), mul.s(10)) | tsum.s(token="mixed")).delay()
    assert res.get(timeout=15) == 4 + 20
    stopped = (boom.s() | group(double.s(), mul.s(10)) | tsum.s(token="stopped")).delay()
    with pytest.raises(Boom):
        stopped.get(timeout=15)


# -- nesting ---------------------------------------------------------------------------------
def test_chains_inside_a_group(capp, worker):
    res = group(add.s(1, 1) | double.s(), add.s(2, 2) | double.s() | double.s()).delay()
    assert res.get(timeout=15) == [4, 16]
    assert res[0].parent.get(timeout=5) == 2
    assert res[1].parent.parent.get(timeout=5) == 4


def test_group_in_the_middle_of_a_chain_and_parent_walks_back(capp, worker, r):
    res = chain(
        add.s(1, 1), group(double.s(), mul.s(10)), collect.s(token="mid"), note.s(token="mid")
    ).apply_async()
    assert res.get(timeout=15) == [4, 20]
    collected = res.parent
    assert collected.get(timeout=5) == [4, 20]
    header = collected.parent
    assert isinstance(header, GroupResult) and header.get(timeout=5) == [4, 20]
    assert header.parent.get(timeout=5) == 2 and header.parent.parent is None
    assert callback_runs(r, "mid") == 1


def test_chord_inside_a_chain(capp, worker, r):
    res = (
        add.s(1, 1) | chord([double.s(), double.s()], tsum.s(token="inner")) | double.s()
    ).delay()
    assert res.get(timeout=15) == 16
    assert res.parent.get(timeout=5) == 8
    assert res.parent.parent.get(timeout=5) == [4, 4]
    assert callback_runs(r, "inner") == 1


def test_chain_as_chord_callback(capp, worker, r):
    res = chord([add.s(1, 1), add.s(2, 2)], tsum.s(token="cb") | double.s()).delay()
    assert res.get(timeout=15) == 12
    assert res.parent.get(timeout=5) == 6
    assert res.parent.parent.get(timeout=5) == [2, 4]
    failed = chord([add.s(1, 1), boom.s()], tsum.s(token="cb-fail") | double.s()).delay()
    with pytest.raises(ChordError):
        failed.get(timeout=15)
    assert callback_runs(r, "cb-fail") == 0


def test_chords_inside_a_group_and_a_chord(capp, worker, r):
    res = group(chord([add.s(1, 1), add.s(2, 2)], tsum.s(token="g1")), add.s(5, 5)).delay()
    assert res.get(timeout=15) == [6, 10]
    outer = chord(
        [chord([add.s(1, 1), add.s(2, 2)], tsum.s(token="in")), add.s(10, 10)],
        collect.s(token="out"),
    ).delay()
    assert outer.get(timeout=15) == [6, 20]
    assert callback_runs(r, "in") == 1 and callback_runs(r, "out") == 1


def test_set_queue_routes_every_step_to_a_worker_of_that_queue(capp, start_worker):
    start_worker("-P", "threads", "-c", "2", "-Q", "other", app=APP)
    res = (add.s(1, 2).set(queue="other") | double.s().set(queue="other")).delay()
    assert res.get(timeout=15) == 6
    flow = chord(
        [add.s(i, i).set(queue="other") for i in range(3)], tsum.s(token="other").set(queue="other")
    ).delay()
    assert flow.get(timeout=15) == 6
    elsewhere = add.s(1, 1).delay()  # the default queue has no worker
    with pytest.raises(TaskTimeoutError):
        elsewhere.get(timeout=0.5)
    assert elsewhere.state == "PENDING"


def test_stress_50_chords_of_20_on_two_workers(capp, start_worker, r):
    start_worker("-P", "threads", "-c", "4", app=APP)
    start_worker("-P", "threads", "-c", "4", app=APP)
    results = [
        chord((add.s(i, j) for j in range(20)), tsum.s(token=f"stress-{i}")).delay()
        for i in range(50)
    ]
    for i, res in enumerate(results):
        assert res.get(timeout=60) == 20 * i + sum(range(20))
    runs = r.hgetall("cv:callback_runs")
    assert len(runs) == 50 and set(runs.values()) == {"1"}


# -- link / link_error -----------------------------------------------------------------------
def test_link_and_link_error_on_tasks_and_signatures(capp, worker, r):
    ok = add.apply_async((2, 3), link=note.s(token="ok"), link_error=errback.s(token="ok"))
    assert ok.get(timeout=10) == 5
    bad = boom.s().apply_async(
        link=note.s(token="bad"), link_error=[errback.s(token="bad"), errback.s(token="bad2")]
    )
    with pytest.raises(Boom):
        bad.get(timeout=10)
    wait_until(
        lambda: (
            r.llen("cv:note:ok") == 1
            and r.llen("cv:errback:bad") == 1
            and r.llen("cv:errback:bad2") == 1
        )
    )
    assert r.lrange("cv:note:ok", 0, -1) == ["5"]
    assert r.lrange("cv:errback:bad", 0, -1) == [bad.id]
    assert r.llen("cv:errback:ok") == 0 and r.llen("cv:note:bad") == 0
    sig = double.s(4)
    sig.link(note.s(token="method"))
    sig.delay()
    wait_until(lambda: r.lrange("cv:note:method", 0, -1) == ["8"])
    res = capp.extensions["taskq"].taskqueue.send_task(
        add.name, (1, 1), link=note.si("fixed", token="by-name")
    )
    assert AsyncResult(res.id).get(timeout=10) == 2
    wait_until(lambda: r.lrange("cv:note:by-name", 0, -1) == ["'fixed'"])


# -- eager mode ------------------------------------------------------------------------------
@pytest.fixture
def eager_app(capp):
    from flask_taskq.testing import eager

    with eager(capp):
        yield capp


def test_chain_group_and_chord_run_inline_in_eager_mode(eager_app, r):
    res = (add.s(1, 2) | mul.s(10) | add.s(5)).delay()
    assert res.get() == 35 and res.parent.get() == 30 and res.parent.parent.get() == 3
    assert group(double.s(i) for i in range(4)).delay().get() == [0, 2, 4, 6]
    res = chord((add.s(i, i) for i in range(5)), tsum.s(token="eager")).delay()
    assert res.get() == 20 and res.parent.get() == [0, 2, 4, 6, 8]
    assert callback_runs(r, "eager") == 1
    nested = (
        add.s(1, 1)
        | group(double.s(), mul.s(10))
        | collect.s(token="e2")
        | note.s(token="eager-tail")
    ).delay()
    assert nested.get() == [4, 20]
    assert isinstance(nested.parent.parent, GroupResult)
    assert r.lrange("cv:note:eager-tail", 0, -1) == ["[4, 20]"]
    assert not r.keys("taskq:workflow*")  # nothing recorded in eager mode
    assert chain([add.s(0, 0)] + [add.s(1) for _ in range(1500)]).delay().get() == 1500


def test_eager_failures_stop_chains_and_fail_chords(eager_app, r):
    res = (add.s(1, 2) | boom.s() | note.s(token="never")).apply_async(
        link_error=errback.s(token="eager-chain")
    )
    with pytest.raises(Boom):
        res.get()
    assert res.parent.failed() and res.parent.parent.get() == 3
    assert r.lrange("cv:errback:eager-chain", 0, -1) == [res.parent.id]
    assert r.llen("cv:note:never") == 0
    res = chord([add.s(1, 1), boom.s(2)], tsum.s(token="eager-fail")).apply_async(
        link_error=errback.s(token="eager-chord")
    )
    with pytest.raises(ChordError, match="boom"):
        res.get()
    assert callback_runs(r, "eager-fail") == 0
    assert r.lrange("cv:errback:eager-chord", 0, -1) == [res.id]
    linked = add.s(2, 3)
    linked.link(note.s(token="eager-link"))
    assert linked.delay().get() == 5
    assert r.lrange("cv:note:eager-link", 0, -1) == ["5"]


def test_task_apply_async_with_links_runs_them_in_eager_mode(eager_app, r):
    res = add.apply_async((2, 3), link=note.s(token="eager-task-link"), priority=3)
    assert res.get() == 5
    assert r.lrange("cv:note:eager-task-link", 0, -1) == ["5"]
    failed = boom.apply_async((1,), link_error=errback.s(token="eager-task-err"))
    with pytest.raises(Boom):
        failed.get()
    assert r.lrange("cv:errback:eager-task-err", 0, -1) == [failed.id]
