"""The compact envelope: fields at their default are left out, every field still travels,
and messages queued in the full (0.1) form still decode and run."""

from __future__ import annotations

import json

import pytest

from flask_taskq.message import DEFAULTS, Message, envelope
from flask_taskq.serializer import get_serializer
from tests.apps.basic import add

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


def test_each_default_is_what_a_reader_fills_in():
    decoded = Message.from_bytes(b'{"v":1,"id":"a","task":"t"}', get_serializer("json"))
    for name, default in DEFAULTS.items():
        value = getattr(decoded, name)
        assert (list(value) if isinstance(value, tuple) else value) == default


def test_a_non_default_field_is_kept_even_when_falsy_elsewhere():
    body = full().replace(priority=0, queue="q", retries=0).to_dict()
    assert body["priority"] == 0 and body["queue"] == "q" and "retries" not in body


def test_a_full_envelope_of_version_0_1_decodes():
    old = {
        "v": 1,
        "id": "t-1",
        "task": "tests.apps.basic.add",
        "args": [2, 3],
        "kwargs": {},
        "queue": "default",
        "priority": 5,
        "eta": None,
        "expires": None,
        "retries": 0,
        "headers": {},
        "sent": 1_800_000_000.123456,
    }
    decoded = Message.from_bytes(json.dumps(old).encode(), get_serializer("json"))
    assert decoded == Message(
        id="t-1", task="tests.apps.basic.add", args=(2, 3), sent=1_800_000_000.123456
    )


def test_a_queued_full_envelope_runs(app, start_worker, r):
    old = {
        "v": 1,
        "id": "old-format-1",
        "task": "tests.apps.basic.add",
        "args": [20, 22],
        "kwargs": {},
        "queue": "default",
        "priority": 5,
        "eta": None,
        "expires": None,
        "retries": 0,
        "headers": {},
        "sent": 1_800_000_000.123456,
    }
    r.xadd("taskq:{default}:p5", {"m": json.dumps(old, separators=(",", ":"))})
    start_worker("-P", "solo")
    with app.app_context():
        assert add.AsyncResult("old-format-1").get(timeout=15) == 42
