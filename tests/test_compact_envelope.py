"""The compact envelope: fields at their default are left out, every field still travels,
and messages queued in the full (0.1) form still decode and run."""

from __future__ import annotations

import json
import threading

import pytest
import redis

from flask_taskq.message import DEFAULTS, Message, envelope, new_task_id, plain_encoder
from flask_taskq.serializer import get_serializer
from tests.apps.basic import add
from tests.conftest import wait_until

SERIALIZERS = ["json", "orjson", "msgpack"]


def full() -> Message:
    return Message(
        id="4f1c",
        task="app.tasks.add",
        args=(1, "two"),
        kwargs={"x": [1, 2]},
        queue="mail",
        priority=7,
        eta=1_900_000_000.25,
        expires=1_900_000_100.5,
        retries=2,
        headers={"traceparent": "00-abc-def-01", "taskq_unique": "k"},
        sent=1_800_000_000.125,
    )


@pytest.mark.parametrize("name", SERIALIZERS)
def test_every_field_round_trips(name):
    serializer = get_serializer(name)
    message = full()
    assert Message.from_bytes(message.to_bytes(serializer), serializer) == message


@pytest.mark.parametrize("name", SERIALIZERS)
def test_defaults_round_trip_and_are_left_out(name):
    serializer = get_serializer(name)
    message = Message(id="4f1c", task="t", sent=1_800_000_000.5)
    decoded = Message.from_bytes(message.to_bytes(serializer), serializer)
    assert decoded == message
    assert set(message.to_dict()) == {"v", "id", "task", "sent"}


def test_a_no_op_envelope_is_small():
    body = get_serializer("json").dumps(
        envelope("x" * 36, "tasks.noop", (), {}, "default", 5, None, None, 0, {}, 1.8e9 + 0.1234)
    )
    assert body == b'{"v":1,"id":"' + b"x" * 36 + b'","task":"tasks.noop","sent":1800000000.123}'


@pytest.mark.parametrize(
    ("args", "kwargs", "queue", "priority", "expires"),
    [
        ((), {}, "default", 5, None),
        ((1, "twö", [2.5, None]), {"k": {"n": True}}, "mail", 0, 1_900_000_000.125),
        (("x",), {}, 'q"uote', 9, None),
    ],
)
def test_the_plain_encoder_writes_what_the_serializer_writes(
    args, kwargs, queue, priority, expires
):
    serializer = get_serializer("json")
    encode = plain_encoder(serializer, "tâsks.do", queue, priority)
    task_id, sent = new_task_id(), 1_800_000_000.123456
    expected = serializer.dumps(
        envelope(task_id, "tâsks.do", args, kwargs, queue, priority, None, expires, 0, {}, sent)
    )
    assert encode(task_id, args, kwargs, expires, sent) == expected


@pytest.mark.parametrize("name", ["orjson", "msgpack"])
def test_only_the_stdlib_json_serializer_has_a_plain_encoder(name):
    assert plain_encoder(get_serializer(name), "t", "default", 5) is None


def test_each_default_is_what_a_reader_fills_in():
    decoded = Message.from_bytes(b'{"v":1,"id":"a","task":"t"}', get_serializer("json"))
    for name, default in DEFAULTS.items():
        value = getattr(decoded, name)
        assert (list(value) if isinstance(value, tuple) else value) == default


def test_a_non_default_field_is_kept_even_when_falsy_elsewhere():
    body = full().replace(priority=0, queue="q", retries=0).to_dict()
    assert body["priority"] == 0 and body["queue"] == "q" and "retries" not in body


def _full_envelope(task_id: str, args: list[int]) -> dict[str, object]:
    """An envelope as 0.1 wrote it: every field spelled out, defaults included."""
    return {
        "v": 1,
        "id": task_id,
        "task": "tests.apps.basic.add",
        "args": args,
        "kwargs": {},
        "queue": "default",
        "priority": 5,
        "eta": None,
        "expires": None,
        "retries": 0,
        "headers": {},
        "sent": 1_800_000_000.123456,
    }


def test_a_full_envelope_of_version_0_1_decodes():
    old = _full_envelope("t-1", [2, 3])
    decoded = Message.from_bytes(json.dumps(old).encode(), get_serializer("json"))
    assert decoded == Message(
        id="t-1", task="tests.apps.basic.add", args=(2, 3), sent=1_800_000_000.123456
    )


def test_a_queued_full_envelope_runs(app, start_worker, r):
    old = _full_envelope("old-format-1", [20, 22])
    r.xadd("taskq:{default}:p5", {"m": json.dumps(old, separators=(",", ":"))})
    start_worker("-P", "solo")
    with app.app_context():
        assert add.AsyncResult("old-format-1").get(timeout=15) == 42


# -- streams of other priorities than the default exist only while they hold messages ----


def queue_keys(r, queue: str = "default") -> list[str]:
    return sorted(
        k if isinstance(k, str) else k.decode() for k in r.scan_iter(f"taskq:{{{queue}}}*")
    )


def test_an_empty_queue_keeps_only_its_default_stream(app, start_worker, r):
    start_worker("-P", "solo")
    assert queue_keys(r) == ["taskq:{default}:p5"]  # the worker made it, with its group
    with app.app_context():
        results = [add.apply_async((i, i), priority=p) for i, p in enumerate((0, 3, 9, 5))]
        assert [res.get(timeout=15) for res in results] == [0, 2, 4, 6]
    wait_until(lambda: queue_keys(r) == ["taskq:{default}:p5"], 15, message="streams gone")
    assert r.xinfo_groups("taskq:{default}:p5")[0]["name"] in ("workers", b"workers")
    assert r.xlen("taskq:{default}:p5") == 0


def test_a_new_priority_stream_reaches_a_worker_already_blocked(app, start_worker, r):
    worker = start_worker("-P", "solo", "-Q", "fresh")
    assert queue_keys(r, "fresh") == ["taskq:{fresh}:p5"]
    # the worker blocks on the one stream that exists; p9 does not exist yet
    wait_until(lambda: blocked_readers(r), 15, message="the worker blocked in XREADGROUP")
    with app.app_context():
        res = add.apply_async((40, 2), queue="fresh", priority=9)
        assert res.get(timeout=15) == 42
    assert worker.proc.poll() is None
    wait_until(lambda: queue_keys(r, "fresh") == ["taskq:{fresh}:p5"], 15, message="p9 gone")


def blocked_readers(r) -> list[dict]:
    return [
        c for c in r.client_list() if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")
    ]


def test_a_send_to_a_new_priority_stream_wakes_a_blocked_read(app, r):
    with app.app_context():
        broker = app.extensions["taskq"].broker
        broker.ensure_groups(["woken"])
        reader = redis.Redis.from_url(broker.url)
        got: list = []
        thread = threading.Thread(
            target=lambda: got.append(
                reader.xreadgroup("workers", "c1", {"taskq:{woken}:p5": ">"}, block=60_000)
            )
        )
        thread.start()
        wait_until(lambda: blocked_readers(r), 15, message="the read blocked")
        add.apply_async((1, 2), queue="woken", priority=9)
        thread.join(30)  # well before the read's own 60 s
        assert not thread.is_alive() and got == [[[b"taskq:{woken}:p5", []]]]
        assert r.xlen("taskq:{woken}:p5") == 0 and r.xlen("taskq:{woken}:p9") == 1


def test_fetch_makes_no_stream_for_a_priority_without_messages(app, r):
    with app.app_context():
        broker = app.extensions["taskq"].broker
        broker.ensure_groups(["idle"])
        assert broker.fetch("c1", ["idle"], 10, 0) == []
        assert queue_keys(r, "idle") == ["taskq:{idle}:p5"]
        add.apply_async((1, 2), queue="idle", priority=2)
        [delivery] = broker.fetch("c1", ["idle"], 10, 0)
        assert delivery.priority == 2
        assert queue_keys(r, "idle") == ["taskq:{idle}:p2", "taskq:{idle}:p5"]
        assert broker.queue_stats(["idle"])["idle"].leased == 1
        broker.ack("c1", [delivery])
        assert queue_keys(r, "idle") == ["taskq:{idle}:p5"]
        assert broker.queue_stats(["idle"])["idle"].ready == 0
