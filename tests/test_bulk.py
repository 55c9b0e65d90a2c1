"""The bulk enqueue API (``delay_many`` / ``apply_many`` / ``send_many``) and the direct
connection the producer's hot path uses, against real Redis and real workers."""

from __future__ import annotations

import json
import os
import time

import pytest

from flask_taskq import BrokerConnectionError, signals
from flask_taskq.broker.direct import DirectCommands
from tests.apps import api
from tests.apps.basic import add, tq


def test_delay_many_runs_every_call_and_keeps_order(app, start_worker):
    start_worker("-P", "threads", "-c", "4")
    with app.app_context():
        results = add.delay_many((i, i) for i in range(250))
        assert len({res.id for res in results}) == 250
        assert [res.get(timeout=20) for res in results] == [2 * i for i in range(250)]


def test_apply_many_takes_kwargs_and_shared_options(app, r):
    with app.app_context():
        results = add.apply_many(
            [((1,), {"y": 2}), (None, {"x": 3, "y": 4})], countdown=60, priority=7, queue="bulk"
        )
    delayed = r.zrange("taskq:{bulk}:delayed", 0, -1, withscores=True)
    assert len(delayed) == 2 and r.xlen("taskq:{bulk}:p7") == 0
    assert all(member.startswith("7") for member, _ in delayed)
    assert all(score > time.time() + 50 for _, score in delayed)
    assert {res.id for res in results} == {json.loads(m[1:])["id"] for m, _ in delayed}


def test_chunks_each_go_in_one_round_trip(app, r, monkeypatch):
    with app.app_context():
        state = app.extensions["taskq"]
        sizes: list[int] = []  # commands per round trip
        original = state.broker.direct.packed_many
        monkeypatch.setattr(
            state.broker.direct,
            "packed_many",
            lambda packed, count, timeout: (sizes.append(count), original(packed, count, timeout))[
                1
            ],
        )
        results = tq.send_many(
            "tests.apps.basic.add", (((i, 1), None) for i in range(10)), chunk_size=4
        )
    assert sizes == [4, 4, 2]
    assert len(results) == 10 and r.xlen("taskq:{default}:p5") == 10


def test_task_sent_fires_for_each_message(app):
    seen: list[str] = []

    def on_sent(sender, task_id, **kw):
        seen.append(task_id)

    signals.task_sent.connect(on_sent)
    try:
        with app.app_context():
            results = add.delay_many([(1, 2), (3, 4), (5, 6)])
    finally:
        signals.task_sent.disconnect(on_sent)
    assert seen == [res.id for res in results]


def test_bad_options_are_typed_errors_and_send_nothing(app, r):
    with app.app_context():
        with pytest.raises(TypeError, match="task_id"):
            add.delay_many([(1, 2)], task_id="x")
        with pytest.raises(TypeError, match="unknown option"):
            add.delay_many([(1, 2)], retries_please=3)
        with pytest.raises(TypeError, match="args\\[0\\]"):
            add.delay_many([(1, 2), (object(), 2)])
    assert r.xlen("taskq:{default}:p5") == 0


def test_eager_mode_runs_each_call():
    app = api.create_app({"TASKQ_BROKER_URL": "redis://127.0.0.1:1/0", "TASKQ_ALWAYS_EAGER": True})
    with app.app_context():
        results = api.add.delay_many([(1, 2), (3, 4)])
        assert [res.get() for res in results] == [3, 7]


def test_unreachable_broker_raises_broker_connection_error(own_redis, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", own_redis.url)
    from tests.apps.basic import create_app

    app = create_app()
    app.config["TASKQ_ENQUEUE_TIMEOUT"] = 1.0
    with app.app_context():
        assert len(add.delay_many([(1, 2)] * 3)) == 3
        own_redis.stop()
        with pytest.raises(BrokerConnectionError, match="cannot reach the broker"):
            add.delay_many([(1, 2)] * 3)
        own_redis.start()
        # the direct connection reconnects by itself
        assert len(add.delay_many([(1, 2)] * 3)) == 3
    assert own_redis.client().xlen("taskq:{default}:p5") == 3


def test_direct_commands_use_a_new_connection_after_fork(redis_url):
    import redis as redis_py

    direct = DirectCommands(redis_py.Redis.from_url(redis_url))
    assert direct.enabled
    assert direct.command("SET", "k", "parent") == b"OK"
    pid = os.fork()
    if pid == 0:  # child: must not share the parent's socket
        code = 0 if direct.command("SET", "k", "child") == b"OK" else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert direct.command("GET", "k") == b"child"
    replies = direct.pipeline([("SET", "a", "1"), ("INCR", "k"), ("GET", "a")])
    assert replies[0] == b"OK" and isinstance(replies[1], redis_py.ResponseError)
    assert replies[2] == b"1"
    with pytest.raises(redis_py.ResponseError):
        direct.command("INCR", "k")
    assert direct.command("GET", "a") == b"1"  # the connection survives a command error


def test_unique_tasks_fall_back_to_one_by_one(redis_url, monkeypatch, r):
    from tests.apps import control

    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    with control.create_app().app_context():
        results = control.once.delay_many([("a",), ("a",), ("b",)])
    assert results[0].id == results[1].id != results[2].id
    assert r.xlen("taskq:{default}:p5") == 2


def test_a_worker_and_app_on_the_orjson_serializer(redis_url, monkeypatch, start_worker):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_SERIALIZER", "orjson")
    from tests.apps.basic import create_app, fail

    app = create_app()
    start_worker("-P", "solo", env={"TASKQ_SERIALIZER": "orjson"})
    with app.app_context():
        assert app.extensions["taskq"].serializer.name == "orjson"
        results = add.delay_many([(1, 2), ("a", "b"), ([1], [2])])
        assert [res.get(timeout=10) for res in results] == [3, "ab", [1, 2]]
        with pytest.raises(Exception, match="nope"):
            fail.delay("nope").get(timeout=10)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"TASKQ_ROUTES": {"api.*": {"queue": "routed", "priority": 2}}},
        {"TASKQ_TASK_DEFAULT_PRIORITY": 8, "TASKQ_SIGNING_KEY": "k" * 32},
    ],
)
def test_plain_delay_sends_what_apply_async_sends(redis_url, r, config):
    """``delay()`` takes a shorter road than ``apply_async()`` (no Message object): the
    message on the wire must be the same but for the id and send time."""
    from flask_taskq.signing import SignedSerializer

    app = api.create_app({"TASKQ_BROKER_URL": redis_url, **config})
    with app.app_context():
        state = app.extensions["taskq"]
        sent = [
            api.perishable.delay(),
            api.perishable.apply_async(),
            api.echo.delay(1, "two", x=[3]),
            api.echo.apply_async((1, "two"), {"x": [3]}),
        ]
    assert isinstance(state.serializer, SignedSerializer) == ("TASKQ_SIGNING_KEY" in config)
    assert api.perishable.send_plan[1].send is not None  # delay() took the short road
    assert api.echo.send_plan[1].send is not None
    import redis as redis_py

    raw_client = redis_py.Redis.from_url(redis_url)
    bodies = {}
    for key in r.keys("taskq:*:p*"):
        for _, fields in raw_client.xrange(key):
            doc = state.serializer.loads(fields[b"m"])
            bodies[doc.pop("id")] = (key, doc)
    assert sorted(bodies) == sorted(res.id for res in sent)
    docs = [bodies[res.id] for res in sent]
    for plain, full in (docs[0:2], docs[2:4]):
        assert plain[0] == full[0]  # same stream: queue and priority
        p, f = dict(plain[1]), dict(full[1])
        assert abs(p.pop("sent") - f.pop("sent")) < 5
        p_exp, f_exp = p.pop("expires", None), f.pop("expires", None)
        assert (p_exp is None) == (f_exp is None)
        assert p_exp is None or abs(p_exp - f_exp) < 5
        assert p == f


def test_packed_sends_parse_replies_and_errors_like_redis_py(redis_url, r):
    """The producer's packed sends read replies with the connection's hiredis reader:
    replies in order, an error reply returned in its place, and the connection usable
    afterwards, also after a reply larger than one read."""
    import redis as redis_py

    direct = DirectCommands(redis_py.Redis.from_url(redis_url))
    big = b"x" * 200_000
    packed = (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
        b"*2\r\n$5\r\nLPUSH\r\n$1\r\nk\r\n"  # wrong number of arguments
        + b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$%d\r\n%b\r\n" % (len(big), big)
        + b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
    )
    replies = direct.packed_many(packed, 4, 5.0)
    assert replies[0] == b"OK" and isinstance(replies[1], redis_py.ResponseError)
    assert replies[2] == b"OK" and replies[3] == big
    assert direct.packed_many(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 1, 5.0) == [b"1"]
    assert direct.command("GET", "k") == b"1"  # redis-py's own road on the same connection


def test_packed_send_to_a_server_that_stops_raises_redis_py_errors(own_redis):
    """A server gone mid-send: redis-py's ConnectionError, marked as maybe sent, and the
    next send reconnects."""
    import redis as redis_py

    from flask_taskq.broker.direct import maybe_sent

    direct = DirectCommands(redis_py.Redis.from_url(own_redis.url))
    ping = b"*1\r\n$4\r\nPING\r\n"
    assert direct.packed_many(ping, 1, 2.0) == [b"PONG"]
    own_redis.stop()
    with pytest.raises(redis_py.ConnectionError) as caught:
        direct.packed_many(ping, 1, 2.0)
    assert maybe_sent(caught.value)
    own_redis.start()
    assert direct.packed_many(ping, 1, 2.0) == [b"PONG"]


@pytest.mark.parametrize("priority", [5, 7])
def test_short_roads_send_again_after_redis_forgot_its_scripts(app, r, priority):
    """``delay()`` and ``delay_many`` at any priority (another than the default goes
    through ``send.lua``): a Redis that lost its scripts gets them again."""
    with app.app_context():
        add.apply_async((1, 1), priority=priority)
        r.script_flush()
        sent = [add.delay(1, 2)] if priority == 5 else []
        sent += add.delay_many([(i, 1) for i in range(3)], priority=priority)
        r.script_flush()
        sent += add.delay_many([(i, 2) for i in range(3)], priority=priority)
    assert r.xlen(f"taskq:{{default}}:p{priority}") == 1 + len(sent)


def test_plain_delay_follows_a_new_broker(app, r):
    """The short road's plan is settled per broker: a state given a new broker (as after
    a fork in a worker) sends through that one, not through the closed old one."""
    with app.app_context():
        state = app.extensions["taskq"]
        add.delay(1, 1)
        old, state.broker = state.broker, state.new_broker()
        old.close()
        add.delay(1, 2)
        add.delay_many([(1, 3)])
    assert r.xlen("taskq:{default}:p5") == 3


def test_sent_json_writes_what_json_writes():
    import random

    from flask_taskq.message import sent_json

    values = [0.0, 1.0, 1_800_000_000.0, 1_800_000_000.1, 1_800_000_000.12, 1_800_000_000.1205]
    values += [random.uniform(1e9, 2e9) for _ in range(20_000)]
    for value in values:
        assert sent_json(value) == json.dumps(round(value, 3)).encode(), value
