"""Regressions of the worker faults of issue 13 (items 1, 2, 8 and the false "Lost the
lease" warning), with real worker processes and a real redis-server."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter

import pytest

from flask_taskq.exceptions import DecodeError
from flask_taskq.keys import GROUP
from flask_taskq.message import Message
from flask_taskq.serializer import get_serializer
from flask_taskq.worker.consumer import Consumer
from tests.conftest import wait_until

FAULTS = "tests.apps.faults:create_app"
STREAM = "taskq:{default}:p5"  # the default queue at the default priority

ENVELOPE = {
    "v": 1,
    "id": "x",
    "task": "tests.apps.faults.add",
    "args": [1, 2],
    "kwargs": {},
    "queue": "default",
    "priority": 5,
    "eta": None,
    "expires": None,
    "retries": 0,
    "headers": {},
    "sent": 1.0,
}

#: Malformed bodies and what their dead letter's reason must say.
MALFORMED = {
    "expires": ({"expires": "soon"}, "'expires'"),
    "eta": ({"eta": "later"}, "'eta'"),
    "retries": ({"retries": "two"}, "'retries'"),
    "priority": ({"priority": "high"}, "'priority'"),
    "args": ({"args": 5}, "'args'"),
    "kwargs": ({"kwargs": [1]}, "'kwargs'"),
    "headers": ({"headers": "h"}, "'headers'"),
}


def body(task_id: str, **changes: object) -> bytes:
    return json.dumps({**ENVELOPE, "id": task_id, **changes}).encode()


@pytest.fixture
def faults_app(redis_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.faults import create_app

    return create_app()


@pytest.fixture
def own_app(own_redis, monkeypatch: pytest.MonkeyPatch):
    """The faults app on a redis-server of the test alone (which it may stop)."""
    monkeypatch.setenv("TASKQ_BROKER_URL", own_redis.url)
    from tests.apps.faults import create_app

    return create_app()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- item 1: malformed messages -------------------------------------------------------------
@pytest.mark.parametrize("field", sorted(MALFORMED))
def test_from_bytes_validates_every_field(field):
    changes, reason = MALFORMED[field]
    with pytest.raises(DecodeError, match=reason):
        Message.from_bytes(body("t1", **changes), get_serializer("json"))


def test_from_bytes_of_an_empty_body_raises_decode_error():
    """What the broker delivers for a stream entry without its ``m`` field."""
    with pytest.raises(DecodeError, match="empty"):
        Message.from_bytes(b"", get_serializer("json"))


def test_malformed_messages_are_dead_lettered_and_the_worker_lives(faults_app, start_worker, r):
    """Before: ``expires`` "soon" raised TypeError in an executor thread, which died with
    the message leased for ever; with both threads dead the worker exited 0."""
    worker = start_worker("-P", "threads", "-c", "2", app=FAULTS)
    for field, (changes, _) in MALFORMED.items():
        r.xadd(STREAM, {"m": body(f"bad-{field}", **changes)})
    r.xadd(STREAM, {"m": body("bad-expires-2", expires=[1])})
    r.xadd(STREAM, {"m": b""})
    with faults_app.app_context():
        from tests.apps.faults import add

        assert add.delay(2, 3).get(timeout=15) == 5
        broker = faults_app.extensions["taskq"].broker
        wait_until(
            lambda: broker.dead_letter_count("default") == len(MALFORMED) + 2,
            message="every malformed message dead-lettered",
        )
        reasons = [str(d["reason"]) for d in broker.dead_letters("default")]
    for field, (_, reason) in MALFORMED.items():
        assert any(reason in text for text in reasons), (field, reasons)
    assert any("empty" in text for text in reasons), reasons
    # nothing stays leased (results are written just before their acks)
    wait_until(lambda: r.xpending(STREAM, GROUP)["pending"] == 0, message="no lease left")
    assert worker.proc.poll() is None
    with faults_app.app_context():  # both executor threads still run tasks
        results = [add.delay(i, i) for i in range(4)]
        assert [res.get(timeout=15) for res in results] == [0, 2, 4, 6]


# -- item 1: results and failures that cannot be encoded ------------------------------------
def test_results_that_cannot_be_encoded_fail_clearly(faults_app, start_worker):
    """Before: RecursionError (deep result) and UnicodeEncodeError (failure document) were
    not caught and ended the executor thread; the task stayed PENDING."""
    worker = start_worker("-P", "threads", "-c", "2", app=FAULTS)
    from tests.apps.faults import add, bad_text, deep

    with faults_app.app_context():
        res = deep.delay()
        with pytest.raises(TypeError, match=r"cannot be encoded.*RecursionError"):
            res.get(timeout=15)
        assert res.state == "FAILURE"
        res = bad_text.delay()
        with pytest.raises(ValueError, match="bad"):
            res.get(timeout=15)
        assert res.state == "FAILURE"
        results = [add.delay(i, 1) for i in range(4)]
        assert [x.get(timeout=15) for x in results] == [1, 2, 3, 4]
    assert worker.proc.poll() is None


# -- item 1: a worker that must exit says so ------------------------------------------------
def test_a_dead_executor_thread_stops_the_worker_non_zero(faults_app, start_worker, r):
    """Before: SystemExit ended one executor thread silently; its message stayed leased
    and renewed for ever and the worker ran on (exiting 0 once every thread was gone)."""
    worker = start_worker("-P", "threads", "-c", "2", app=FAULTS)
    from tests.apps.faults import leave

    with faults_app.app_context():
        leave.delay()
    assert worker.wait(timeout=20) != 0
    assert "died" in worker.log
    # its message is left to its lease (another worker takes it over), not acked
    assert r.xpending(STREAM, GROUP)["pending"] == 1


# -- item 1: Redis errors that are not connection errors ------------------------------------
def test_redis_refusing_writes_is_retried_not_fatal(own_app, own_redis, start_worker):
    """Before: OutOfMemoryError while storing a result escaped the executor (only
    connection errors were caught) and ended the worker; one while dead-lettering left
    the message leased for ever."""
    client = own_redis.client()
    from tests.apps.faults import fill_memory

    with own_app.app_context():
        res = fill_memory.delay()  # runs first: makes Redis refuse writes
        client.xadd(STREAM, {"m": body("bad", expires="soon")})  # then: dead-letter it
        worker = start_worker("-P", "threads", "-c", "1", app=FAULTS, broker_url=own_redis.url)
        worker.wait_for_log("Redis refused: could not acknowledge")
        worker.wait_for_log("Redis refused: could not dead-letter message")
        lines = len(worker.lines)
        time.sleep(2.0)  # an observation window, not a synchronisation
        assert len(worker.lines) - lines <= 5, worker.log[-3000:]
        assert worker.proc.poll() is None
        client.config_set("maxmemory", 0)
        assert res.get(timeout=15) == "stored"
        broker = own_app.extensions["taskq"].broker
        wait_until(
            lambda: broker.dead_letter_count("default") == 1,
            message="the malformed message dead-lettered once Redis accepts it",
        )
    wait_until(lambda: client.xpending(STREAM, GROUP)["pending"] == 0, message="no lease left")
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.log


# -- item 2: no spin while Redis is away ----------------------------------------------------
def test_keeper_does_not_spin_while_redis_is_down(own_app, own_redis, start_worker):
    """Before: a finished task waiting for its ack made the keeper retry its flush with a
    zero wait: a core busy and thousands of "Could not renew leases" lines a second."""
    worker = start_worker("-P", "solo", app=FAULTS, broker_url=own_redis.url)
    client = own_redis.client()
    from tests.apps.faults import during_outage

    with own_app.app_context():
        res = during_outage.delay(1.0)
        wait_until(lambda: client.get("faults:started"), message="the task started")
        own_redis.stop()
        worker.wait_for_log("succeeded")  # finished, its ack and result wait for Redis
        lines, cpu = len(worker.lines), cpu_seconds(worker.proc.pid)
        time.sleep(3.0)  # an observation window, not a synchronisation
        assert len(worker.lines) - lines <= 6, worker.log[-3000:]
        assert cpu_seconds(worker.proc.pid) - cpu < 1.5  # spinning used 2.4 s of the 3
        own_redis.start()
        assert res.get(timeout=20) == "done"  # the result lands once Redis is back
    worker.wait_for_log("Redis answers again: could acknowledge")
    assert worker.proc.poll() is None


# -- item 8: prefork children do not hoard slow tasks ---------------------------------------
def test_prefork_children_do_not_hoard_slow_tasks(faults_app, start_worker):
    """Before: a new child assumed 10 ms per task and took 5 of 6 waiting slow tasks in
    its first batch while the other child idled (a 5/1 split)."""
    from tests.apps.faults import pid

    with faults_app.app_context():
        results = [pid.delay(1.0) for _ in range(6)]  # waiting when the children start
        start_worker("-P", "prefork", "-c", "2", app=FAULTS)
        pids = Counter(res.get(timeout=30) for res in results)
    assert len(pids) == 2 and max(pids.values()) <= 4, pids


# -- Also: no false "Lost the lease" ---------------------------------------------------------
def test_renewal_does_not_warn_about_entries_acked_meanwhile(faults_app, caplog):
    """Before: an entry acked between the renewal's snapshot and its script came back as
    "lost" and was warned about."""
    state = faults_app.extensions["taskq"]
    broker = state.new_broker()
    consumer = Consumer(state, broker, state.new_backend(), "renewer", ["default"], 8)
    broker.ensure_groups(["default"])
    from tests.apps.faults import add

    with faults_app.app_context():
        add.delay(1, 1)
    consumer._accept(broker.fetch("renewer", ["default"], 1, 1.0))
    item = consumer.next()
    assert item is not None
    delivery, message = item
    renew = broker.renew

    def acked_meanwhile(name, held):
        consumer.complete(delivery, message.id, "SUCCESS", None, 0.001)
        consumer.flush()  # acks now (an executor's next fetch would carry it)
        return renew(name, held)

    broker.renew = acked_meanwhile
    with caplog.at_level(logging.WARNING, logger="flask_taskq.worker"):
        consumer.renew()
    assert "Lost the lease" not in caplog.text
    assert consumer.held == 0
