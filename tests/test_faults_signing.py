"""Signing faults (issue 13, items 12 and 14), with a real redis-server and real workers:
dead letters of bad signatures say which task and id the body claims (unverified) and no
result is written for them; a replayed signed body does not run again, while the
worker's own re-adds (Reject(requeue=True), retries, rate-limit deferrals, a takeover
after a crash) still run."""

from __future__ import annotations

import base64
import json
import re
import signal

import pytest
import redis

from flask_taskq.message import Message
from flask_taskq.serializer import get_serializer
from flask_taskq.signing import SignedSerializer, peek
from tests.apps import signing_app
from tests.apps.signing_app import PASSWORD, USER
from tests.conftest import wait_until

APP = "tests.apps.signing_app:create_app"
KEY_A, KEY_B = "key A", "key B"
SIGNED = {"TASKQ_SIGNING_KEY": KEY_A}
P5 = "taskq:{default}:p5"
DEAD = "taskq:{default}:dead"
RECORD = "tests.apps.signing_app.record"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


@pytest.fixture
def sapp(redis_url, monkeypatch):
    """The signing test app with key A, on the test Redis."""
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_SIGNING_KEY", KEY_A)
    return signing_app.create_app()


@pytest.fixture(name="rb")
def bytes_client(redis_url):
    return redis.Redis.from_url(redis_url)


def signed_body(key: str, task_id: str, task: str = RECORD, args=("x",)) -> bytes:
    message = Message(id=task_id, task=task, args=tuple(args))
    return message.to_bytes(SignedSerializer(get_serializer("json"), key))


def dead_letters(rb):
    return [
        {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        for _, fields in rb.xrange(DEAD)
    ]


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=["taskq", "dead-letter", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def runs(rb, token):
    value = rb.hget("sig:runs", token)
    return int(value) if value is not None else 0


# -- item 12: bad signatures ---------------------------------------------------------------
def test_peek_reads_claims_without_trusting_and_never_raises():
    body = signed_body(KEY_B, "claimed-id")
    assert peek(body) == (RECORD, "claimed-id")
    assert peek(b"\xff not json") is None
    assert peek(b"tq1:" + b"\0" * 32 + b"[1, 2]") is None
    assert peek(b"[" * 100_000) is None  # too deep for the decoder: still no exception
    import pickle

    assert peek(pickle.dumps({"task": "t", "id": "i"})) is None  # never unpickled
    try:
        msgpack = get_serializer("msgpack")
    except ImportError:
        return
    packed = Message(id="m-1", task="t.m").to_bytes(SignedSerializer(msgpack, KEY_B))
    assert peek(packed) == ("t.m", "m-1")


def test_bad_signature_dead_letter_shows_claimed_task_and_id(sapp, start_worker, rb):
    start_worker("-P", "solo", app=APP, env=SIGNED)
    rb.xadd(P5, {"m": signed_body(KEY_B, "forged-1", args=("f",))})
    good = signed_body(KEY_A, "tampered-1", args=("t",))
    rb.xadd(P5, {"m": good.replace(b'"t"', b'"T"')})  # signed with A, then changed
    wait_until(lambda: rb.xlen(DEAD) == 2, message="both messages dead-lettered")

    letters = dead_letters(rb)
    assert [(d["task"], d["id"]) for d in letters] == [("?", "?")] * 2  # store: untrusted
    assert (
        "unverified: claims task 'tests.apps.signing_app.record', id 'forged-1'"
        in letters[0]["reason"]
    )
    listing = cli(sapp, "list")
    assert f"{RECORD} (unverified)" in listing
    assert "forged-1 (unverified)" in listing and "tampered-1 (unverified)" in listing
    rows = {r["unverified_task_id"]: r for r in json.loads(cli(sapp, "list", "--json"))}
    assert rows["forged-1"]["task_id"] == "?"
    assert rows["forged-1"]["unverified_task"] == RECORD
    shown = cli(sapp, "show", "forged-1")  # found by the id it claims
    assert "forged-1 (unverified)" in shown and "bad signature" in shown

    client = sapp.test_client()
    page = client.get("/taskq/failures", headers=AUTH).text
    assert "unverified" in page and RECORD in page and "forged-1" in page

    # no result is written for an unverified message: its sender's get() times out
    assert not rb.exists("taskq:result:{forged-1}", "taskq:result:{tampered-1}")
    assert runs(rb, "f") == 0 and runs(rb, "T") == 0


# -- item 14: replays ----------------------------------------------------------------------
def test_replayed_signed_body_is_dead_lettered_not_run(sapp, start_worker, rb):
    start_worker("-P", "threads", "-c", "2", app=APP, env=SIGNED)
    body = signed_body(KEY_A, "replay-1", args=("once",))
    rb.xadd(P5, {"m": body})
    wait_until(
        lambda: b"SUCCESS" in (rb.get("taskq:result:{replay-1}") or b""), message="first run"
    )
    assert runs(rb, "once") == 1

    rb.xadd(P5, {"m": body})  # the exact signed body again
    wait_until(lambda: rb.xlen(DEAD) == 1, message="the replay dead-lettered")
    letter = dead_letters(rb)[0]
    assert letter["reason"].startswith("replayed:")
    assert (letter["task"], letter["id"]) == (RECORD, "replay-1")
    assert runs(rb, "once") == 1
    with sapp.app_context():  # the worker goes on, and its result stayed the first one
        assert signing_app.record.delay("after").get(timeout=10) == "after"
        assert signing_app.tq.AsyncResult("replay-1").get(timeout=1) == "once"


def test_replay_while_the_original_runs_does_not_run_twice(sapp, start_worker, rb):
    start_worker("-P", "threads", "-c", "2", app=APP, env=SIGNED)
    body = signed_body(KEY_A, "replay-2", args=("slow", 1.5))
    rb.xadd(P5, {"m": body})
    wait_until(lambda: rb.hget("sig:started", "slow"), message="the original started")
    rb.xadd(P5, {"m": body})
    wait_until(lambda: rb.xlen(DEAD) == 1, message="the concurrent copy dead-lettered")
    wait_until(lambda: runs(rb, "slow") == 1, message="the original finished")
    assert int(rb.hget("sig:started", "slow")) == 1


def test_worker_requeues_and_retries_still_run_with_signing(sapp, start_worker, rb):
    start_worker("-P", "threads", "-c", "2", app=APP, env=SIGNED)
    with sapp.app_context():
        requeued = signing_app.requeue_once.delay("rq")
        retried = signing_app.flaky.delay("fl", 2)
        limited = [signing_app.limited.delay(f"lim{i}") for i in range(5)]
        assert requeued.get(timeout=15) == "second run"
        assert retried.get(timeout=15) == 3
        assert [r.get(timeout=15) for r in limited] == [1] * 5
    assert runs(rb, "rq") == 2 and runs(rb, "fl") == 3
    assert rb.xlen(DEAD) == 0, dead_letters(rb)


def test_takeover_after_a_crash_still_runs(sapp, start_worker, rb):
    env = {**SIGNED, "TASKQ_VISIBILITY_TIMEOUT": "1.5"}
    first = start_worker("-P", "solo", app=APP, env=env)
    with sapp.app_context():
        result = signing_app.record.delay("crash", 2.0)
    wait_until(lambda: rb.hget("sig:started", "crash"), message="the task started")
    first.kill_group()  # SIGKILL while it runs: same stream entry, delivered again
    start_worker("-P", "solo", app=APP, env=env)
    assert result.get(timeout=20) == "crash"
    assert int(rb.hget("sig:started", "crash")) == 2
    assert rb.xlen(DEAD) == 0, dead_letters(rb)


def test_takeover_then_deferral_still_runs(sapp, start_worker, rb):
    """A task started on a worker that crashed, taken over by another that must hand it
    back under a new entry id (rate limit): not a replay, it runs."""
    env = {**SIGNED, "TASKQ_VISIBILITY_TIMEOUT": "1.5"}
    first = start_worker("-P", "solo", app=APP, env=env)
    with sapp.app_context():
        result = signing_app.scarce.delay("defer", 3.0)
    wait_until(lambda: rb.hget("sig:started", "defer"), message="the task started")
    first.kill_group()  # its one token a minute is spent
    start_worker("-P", "solo", app=APP, env=env)
    delayed = "taskq:{default}:delayed"
    wait_until(lambda: rb.zcard(delayed) == 1, message="the takeover deferred (rate limit)")
    rb.delete("taskq:ratelimit:{tests.apps.signing_app.scarce}")  # a token again
    member = rb.zrange(delayed, 0, 0)[0]
    rb.zadd(delayed, {member: 1.0})  # due now rather than in a minute
    wait_until(
        lambda: b"SUCCESS" in (rb.get(f"taskq:result:{{{result.id}}}") or b"") or rb.xlen(DEAD),
        timeout=20,
        message="the task finished or was dead-lettered",
    )
    assert rb.xlen(DEAD) == 0, dead_letters(rb)
    assert result.get(timeout=1) == 1
    assert int(rb.hget("sig:started", "defer")) == 2


def test_requeued_dead_letter_of_a_signed_task_runs_again(sapp, start_worker, rb):
    worker = start_worker("-P", "solo", app=APP, env=SIGNED)
    body = signed_body(KEY_A, "again-1", args=("again",))
    rb.xadd(P5, {"m": body})
    wait_until(lambda: runs(rb, "again") == 1, message="first run")
    rb.xadd(P5, {"m": body})
    wait_until(lambda: rb.xlen(DEAD) == 1, message="the replay dead-lettered")
    entry = rb.xrange(DEAD)[0][0].decode()
    assert "Requeued 1" in cli(sapp, "requeue", entry)  # the operator wants it run
    wait_until(lambda: runs(rb, "again") == 2, message="the requeued copy ran")
    assert rb.xlen(DEAD) == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_dashboard_retry_of_a_signed_failure_runs_again(sapp, start_worker, rb):
    start_worker("-P", "solo", app=APP, env=SIGNED)
    with sapp.app_context():
        res = signing_app.fails_once.delay("dash")
        with pytest.raises(ValueError):
            res.get(timeout=10)
    client = sapp.test_client()
    wait_until(
        lambda: f'data-task-id="{res.id}"' in client.get("/taskq/failures", headers=AUTH).text,
        message="the failure listed (next heartbeat)",
    )
    page = client.get("/taskq/failures", headers=AUTH).text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    resp = client.post(
        "/taskq/tasks/retry", headers=AUTH, data={"task_id": res.id, "csrf_token": csrf}
    )
    assert resp.status_code == 303
    wait_until(
        lambda: runs(rb, "dash") == 2 or rb.xlen(DEAD), message="the retry ran or was dead-lettered"
    )
    assert rb.xlen(DEAD) == 0, dead_letters(rb)
    with sapp.app_context():
        wait_until(lambda: res.state == "SUCCESS", message="the retried task succeeded")
        assert res.result == "dash fixed"
