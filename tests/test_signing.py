"""``TASKQ_SIGNING_KEY``: signed messages run; unsigned and forged ones are dead-lettered."""

from __future__ import annotations

import pytest
import redis

from flask_taskq.message import Message
from flask_taskq.serializer import get_serializer
from flask_taskq.signing import BadSignature, SignedSerializer
from tests.apps import control
from tests.apps.control import record
from tests.conftest import wait_until

APP = "tests.apps.control:create_app"
KEY = {"TASKQ_SIGNING_KEY": "s3cret"}


def test_signed_serializer_round_trip_and_refusals():
    signed = SignedSerializer(get_serializer("json"), "k1")
    data = signed.dumps({"a": 1})
    assert signed.loads(data) == {"a": 1}
    with pytest.raises(BadSignature, match="not signed"):
        signed.loads(b'{"a": 1}')
    with pytest.raises(BadSignature, match="not signed with this key"):
        SignedSerializer(get_serializer("json"), "k2").loads(data)
    tampered = data[:-2] + b"2}"
    with pytest.raises(BadSignature):
        signed.loads(tampered)


@pytest.fixture
def signed_app(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_SIGNING_KEY", KEY["TASKQ_SIGNING_KEY"])
    return control.create_app()


def dead_reasons(redis_url):
    raw = redis.Redis.from_url(redis_url)
    return [f[b"reason"].decode() for _, f in raw.xrange("taskq:{default}:dead")]


def test_unsigned_and_forged_messages_are_dead_lettered(signed_app, start_worker, r, redis_url):
    start_worker("-P", "solo", app=APP, env=KEY)
    plain = Message(id="unsigned", task="tests.apps.control.record", args=("u",))
    forged = Message(id="forged", task="tests.apps.control.record", args=("f",))
    raw = redis.Redis.from_url(redis_url)
    raw.xadd("taskq:{default}:p5", {"m": plain.to_bytes(get_serializer("json"))})
    raw.xadd(
        "taskq:{default}:p5",
        {"m": forged.to_bytes(SignedSerializer(get_serializer("json"), "wrong key"))},
    )
    wait_until(lambda: r.xlen("taskq:{default}:dead") == 2)
    assert [reason.split(":")[0] for reason in dead_reasons(redis_url)] == ["bad signature"] * 2
    with signed_app.app_context():  # signed messages still run, the worker went on
        assert record.delay("good").get(timeout=10) == "good"
    assert r.hget("ctl:runs", "u") is None and r.hget("ctl:runs", "f") is None


def test_worker_without_the_key_refuses_signed_messages(signed_app, start_worker, r, redis_url):
    start_worker("-P", "solo", app=APP, env={"TASKQ_SIGNING_KEY": ""})  # no key
    with signed_app.app_context():
        record.delay("x")
    wait_until(lambda: r.xlen("taskq:{default}:dead") == 1)
    assert r.hget("ctl:runs", "x") is None


def test_pickle_logs_a_warning_at_worker_start(redis_url, start_worker):
    worker = start_worker("-P", "solo", app=APP, env={"TASKQ_SERIALIZER": "pickle"})
    worker.wait_for_log("TASKQ_SERIALIZER is pickle")


def test_signed_message_without_a_key_says_bad_signature():
    from flask_taskq.exceptions import DecodeError

    data = Message(id="s", task="t").to_bytes(SignedSerializer(get_serializer("json"), "k"))
    with pytest.raises(DecodeError, match="bad signature: the message is signed"):
        Message.from_bytes(data, get_serializer("json"))
