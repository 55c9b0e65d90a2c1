"""The message envelope: encoding, decoding, and refusing what is not a v1 envelope."""

from __future__ import annotations

import json

import msgpack
import pytest

from flask_taskq import Message, MessageTooLarge
from flask_taskq.exceptions import DecodeError
from flask_taskq.serializer import get_serializer

SERIALIZERS = ["json", "orjson", "msgpack"]


def sample() -> Message:
    return Message(
        id="4f1c",
        task="app.tasks.add",
        args=(1, "two", [3.5, None], {"k": True}),
        kwargs={"x": {"nested": [1, 2]}, "name": "héllo"},
        queue="mail",
        priority=7,
        eta=1_900_000_000.25,
        expires=1_900_000_100.5,
        retries=2,
        headers={"trace": "abc"},
        sent=1_800_000_000.125,
    )


@pytest.mark.parametrize("name", SERIALIZERS)
def test_round_trip(name):
    serializer = get_serializer(name)
    message = sample()

    data = message.to_bytes(serializer)

    assert isinstance(data, bytes)
    assert Message.from_bytes(data, serializer) == message


@pytest.mark.parametrize("name", SERIALIZERS)
def test_round_trip_of_a_minimal_message_keeps_defaults(name):
    serializer = get_serializer(name)
    decoded = Message.from_bytes(Message(id="1", task="t").to_bytes(serializer), serializer)

    assert (decoded.args, decoded.kwargs, decoded.queue, decoded.priority) == ((), {}, "default", 5)
    assert decoded.eta is None and decoded.expires is None
    assert decoded.retries == 0 and decoded.headers == {}
    assert decoded.sent > 0  # stamped when encoded


def test_json_envelope_fields():
    body = json.loads(sample().to_bytes(get_serializer("json")))
    assert body == {
        "v": 1,
        "id": "4f1c",
        "task": "app.tasks.add",
        "args": [1, "two", [3.5, None], {"k": True}],
        "kwargs": {"x": {"nested": [1, 2]}, "name": "héllo"},
        "queue": "mail",
        "priority": 7,
        "eta": 1_900_000_000.25,
        "expires": 1_900_000_100.5,
        "retries": 2,
        "headers": {"trace": "abc"},
        "sent": 1_800_000_000.125,
    }


def test_msgpack_envelope_is_msgpack():
    body = msgpack.unpackb(sample().to_bytes(get_serializer("msgpack")), raw=False)
    assert body["v"] == 1
    assert body["task"] == "app.tasks.add"


def test_tuples_inside_arguments_come_back_as_lists():
    serializer = get_serializer("json")
    message = Message(id="1", task="t", args=((1, 2),), sent=1.0)
    assert Message.from_bytes(message.to_bytes(serializer), serializer).args == ([1, 2],)


@pytest.mark.parametrize(
    ("name", "garbage"),
    [
        ("json", b"\xff\xfe not json"),
        ("json", b"{truncated"),
        ("json", b""),
        ("orjson", b"{truncated"),
        ("msgpack", b"\xc1"),  # a byte msgpack never uses
        ("msgpack", b"\x92\x01"),  # an array announced with two items, holding one
    ],
)
def test_garbage_bytes_raise_decode_error(name, garbage):
    with pytest.raises(DecodeError, match="undecodable"):
        Message.from_bytes(garbage, get_serializer(name))


@pytest.mark.parametrize("name", SERIALIZERS)
@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        "a string",
        {"id": "1", "task": "t"},  # no version
    ],
)
def test_something_decodable_that_is_no_envelope_raises_decode_error(name, body):
    serializer = get_serializer(name)
    with pytest.raises(DecodeError, match="envelope"):
        Message.from_bytes(serializer.dumps(body), serializer)


@pytest.mark.parametrize("name", SERIALIZERS)
def test_wrong_version_raises_decode_error(name):
    serializer = get_serializer(name)
    body = sample().to_dict()
    body["v"] = 2

    with pytest.raises(DecodeError, match="v1"):
        Message.from_bytes(serializer.dumps(body), serializer)


@pytest.mark.parametrize("name", SERIALIZERS)
def test_envelope_without_id_raises_decode_error(name):
    serializer = get_serializer(name)
    body = sample().to_dict()
    del body["id"]

    with pytest.raises(DecodeError, match="malformed"):
        Message.from_bytes(serializer.dumps(body), serializer)


def test_decode_error_is_a_value_error():
    with pytest.raises(ValueError):
        Message.from_bytes(b"nope", get_serializer("json"))


def test_to_bytes_enforces_max_bytes():
    serializer = get_serializer("json")
    message = Message(id="1", task="t", args=("x" * 500,))
    assert len(message.to_bytes(serializer, max_bytes=1000)) <= 1000
    with pytest.raises(MessageTooLarge, match="500"):
        message.to_bytes(serializer, max_bytes=500)


@pytest.mark.parametrize("name", SERIALIZERS)
def test_to_bytes_names_the_unencodable_argument(name):
    serializer = get_serializer(name)
    message = Message(id="1", task="t", args=(1, object()), kwargs={"ok": 1})
    with pytest.raises(TypeError, match=r"args\[1\]"):
        message.to_bytes(serializer)
    message = Message(id="1", task="t", args=(1,), kwargs={"when": {1, 2}})
    with pytest.raises(TypeError, match=r"kwargs\['when'\]"):
        message.to_bytes(serializer)


def test_replace_returns_a_changed_copy():
    message = sample()
    retried = message.replace(retries=3)
    assert retried.retries == 3
    assert message.retries == 2
    assert retried.id == message.id


def test_orjson_writes_what_json_writes_and_refuses_what_json_cannot_carry():
    fast, plain = get_serializer("orjson"), get_serializer("json")
    message = sample()
    assert message.to_bytes(fast) == message.to_bytes(plain)
    assert Message.from_bytes(message.to_bytes(plain), fast) == message
    for bad in (2**70, {1: "int key"}, __import__("datetime").date(2026, 1, 1)):
        with pytest.raises(TypeError, match=r"argument args\[0\]"):
            Message(id="1", task="t", args=(bad,), sent=1.0).to_bytes(fast)


def test_new_task_ids_are_random_version_4_uuids():
    import uuid

    from flask_taskq.message import new_task_id

    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
