"""Broker faults of issue 13, each against a real redis-server and, where the fault shows
through a worker, a real worker process: stream entries without (or not first with) the
``m`` field, revocations from a sender whose clock is behind, the dead-letter store's byte
bound, and acks/requeues/dead letters of entries whose lease another worker took over."""

from __future__ import annotations

import json
import os
import time

import pytest
import redis
from flask import Flask

from flask_taskq import TaskRevokedError
from flask_taskq.broker.redis import GROUP, RedisBroker
from flask_taskq.metrics import collect, render_text
from tests.apps import control
from tests.apps.basic import add, mark, tq
from tests.apps.control import record
from tests.conftest import wait_until

P5 = "taskq:{default}:p5"
DEAD = "taskq:{default}:dead"
DEAD_BYTES = "taskq:{default}:dead:bytes"
APP = "tests.test_faults_broker:create_app"


def create_app() -> Flask:
    """The basic tasks, with ``TASKQ_DEAD_LETTER_MAX_BYTES`` from the environment (the
    worker processes of these tests run it)."""
    app = Flask("faults")
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    if "TASKQ_DEAD_LETTER_MAX_BYTES" in os.environ:
        app.config["TASKQ_DEAD_LETTER_MAX_BYTES"] = int(os.environ["TASKQ_DEAD_LETTER_MAX_BYTES"])
    tq.init_app(app)
    return app


@pytest.fixture(name="rb")
def bytes_client(redis_url):
    return redis.Redis.from_url(redis_url)


def blocked_in_xreadgroup(rb: redis.Redis) -> bool:
    """True while some client waits in a blocking XREADGROUP (a worker with nothing to do)."""
    return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in rb.client_list())


def entry_size(fields: dict[bytes, bytes]) -> int:
    return sum(len(k) + len(v) for k, v in fields.items())


# -- item 1 (broker part): an entry without ``m`` through the blocking read ---------------------
@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_entry_without_m_through_the_blocking_read_is_dead_lettered(app, start_worker, rb, pool):
    worker = start_worker("-P", pool, "-c", "1")
    with app.app_context():
        assert add.delay(1, 2).get(timeout=10) == 3
    wait_until(lambda: blocked_in_xreadgroup(rb), message="the worker blocked in XREADGROUP")
    rb.xadd(P5, {"x": b"1"})
    wait_until(lambda: rb.xlen(DEAD) == 1, message="the entry dead-lettered")
    ((_, fields),) = rb.xrange(DEAD)
    assert fields[b"body"] == b""
    assert b"undecodable" in fields[b"reason"]
    assert rb.xlen(P5) == 0  # it left the queue
    with app.app_context():
        assert add.delay(2, 3).get(timeout=10) == 5  # the executor lives on
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.log


def test_entry_without_m_through_reclaim_is_dead_lettered_as_it_is(app, start_worker, rb):
    rb.xgroup_create(P5, GROUP, id="0", mkstream=True)
    rb.xadd(P5, {"x": b"1"})
    assert rb.xreadgroup(GROUP, "gone@nowhere", {P5: ">"}, count=1)  # a worker that died
    worker = start_worker("-P", "threads", "-c", "1", env={"TASKQ_VISIBILITY_TIMEOUT": "0.6"})
    wait_until(lambda: rb.xlen(DEAD) == 1, message="the entry dead-lettered")
    ((_, fields),) = rb.xrange(DEAD)
    assert fields[b"body"] == b""  # not the value of the first field
    with app.app_context():
        assert add.delay(2, 3).get(timeout=10) == 5
    assert worker.proc.poll() is None


# -- item 5: the field named ``m``, not the first one ------------------------------------------
def _move_m_after_x(rb: redis.Redis) -> None:
    """Rewrite the one entry of P5 as ``x 1 m <body>``."""
    ((entry_id, fields),) = rb.xrange(P5)
    rb.xdel(P5, entry_id)
    rb.xadd(P5, {"x": b"1", "m": fields[b"m"]})


def test_fetch_reads_the_field_named_m(app, start_worker, rb):
    with app.app_context():
        res = add.delay(20, 22)
    _move_m_after_x(rb)
    start_worker("-P", "solo")  # takes it through fetch.lua (it is waiting already)
    with app.app_context():
        assert res.get(timeout=10) == 42
    assert rb.xlen(DEAD) == 0


def test_reclaim_reads_the_field_named_m(app, start_worker, rb):
    with app.app_context():
        res = add.delay(1, 1)
    _move_m_after_x(rb)
    rb.xgroup_create(P5, GROUP, id="0", mkstream=True)
    taken = rb.xreadgroup(GROUP, "gone@nowhere", {P5: ">"}, count=1)  # a worker that died
    assert taken
    start_worker("-P", "solo", env={"TASKQ_VISIBILITY_TIMEOUT": "0.6"})
    with app.app_context():
        assert res.get(timeout=10) == 2  # taken over through reclaim.lua
    assert rb.xlen(DEAD) == 0


# -- item 6: revocation does not depend on the revoking client's clock ---------------------------
@pytest.fixture
def capp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    return control.create_app()


def test_revoke_from_a_clock_behind_still_wins(capp, start_worker, r, monkeypatch):
    start_worker("-P", "solo", app="tests.apps.control:create_app")
    with capp.app_context():
        capp.extensions["taskq"].revocations.revoke(["earlier"])  # scored at the real time
        assert record.delay("warm").get(timeout=10) == "warm"  # the worker has seen it
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() - 6.0)
        capp.extensions["taskq"].revocations.revoke(["late-clock"])
        monkeypatch.setattr(time, "time", real_time)
        doomed = record.apply_async(("doomed",), task_id="late-clock")
        assert record.delay("after").get(timeout=10) == "after"
        with pytest.raises(TaskRevokedError):
            doomed.get(timeout=10)
    assert int(r.hget("ctl:runs", "doomed") or 0) == 0


def test_revocation_scores_never_go_back(redis_url, r):
    """A score already in the set that is ahead of Redis's clock (a failover to a host
    behind, a score from an earlier version) is still topped by the next revocation."""
    from flask_taskq.keys import Keys
    from flask_taskq.revocation import Revocations
    from flask_taskq.store.redis.revocations import RedisRevocationStore

    future = r.time()[0] + 3600.0
    r.zadd("taskq:revoked", {"from-the-future": future})
    store = RedisRevocationStore(redis.Redis.from_url(redis_url), Keys())
    Revocations(store, 86400).revoke(["next"])
    assert r.zscore("taskq:revoked", "next") > future


# -- item 13: the dead-letter store is bounded by bytes ----------------------------------------
def test_dead_letter_store_is_trimmed_to_its_byte_bound(start_worker, rb, redis_url, monkeypatch):
    bound = 100_000
    worker = start_worker("-P", "solo", app=APP, env={"TASKQ_DEAD_LETTER_MAX_BYTES": str(bound)})
    ids = []
    for i in range(6):  # undecodable bodies of 30 kB: dead-lettered as they come
        ids.append(rb.xadd(P5, {"m": bytes([0xFF, i]) * 15_000}))
        wait_until(
            lambda n=i: len(rb.xrange(DEAD)) and rb.xrevrange(DEAD, count=1)[0][1][b"body"][1] == n,
            message=f"dead letter {i}",
        )
    entries = rb.xrange(DEAD)
    assert [f[b"body"][1] for _, f in entries] == [3, 4, 5]  # the oldest went
    total = sum(entry_size(f) for _, f in entries)
    assert total <= bound
    assert int(rb.get(DEAD_BYTES)) == total
    worker.wait_for_log("Trimmed the 1 oldest dead letter(s) of queue default", count=3)

    def published() -> int:
        beats = [json.loads(rb.get(k)) for k in rb.keys("taskq:worker:*")]
        return sum(b.get("dead_letters_trimmed", 0) for b in beats)

    wait_until(lambda: published() == 3, message="the heartbeat's dead_letters_trimmed")
    stats = {}
    for key in rb.keys("taskq:stats:*"):
        stats.update(rb.hgetall(key))
    assert int(stats[b"dead_letters_trimmed|default|"]) == 3
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    exposed = render_text(collect(create_app()))
    assert 'taskq_dead_letters_trimmed_total{queue="default"} 3' in exposed


def test_dead_letter_byte_count_follows_requeue_delete_and_purge(redis_url, rb):
    broker = RedisBroker(redis_url)
    broker.ensure_groups(["default"])
    for i in range(3):
        rb.xadd(P5, {"m": b"\xff" * (100 * (i + 1))})
    deliveries = broker.fetch("me", ["default"], 10, 0)
    for d in deliveries:
        assert broker.dead_letter("me", d, "bad", "?", "?") == 0
    entries = rb.xrange(DEAD)
    assert int(rb.get(DEAD_BYTES)) == sum(entry_size(f) for _, f in entries)
    assert broker.requeue_dead("default", [entries[0][0].decode()]) == 1
    assert broker.delete_dead("default", [entries[1][0].decode()]) == 1
    assert int(rb.get(DEAD_BYTES)) == entry_size(entries[2][1])
    assert broker.purge_dead("default") == 1
    assert rb.exists(DEAD_BYTES) == 0


def test_a_store_from_before_the_byte_count_is_counted_once(redis_url, rb):
    broker = RedisBroker(redis_url, dead_letter_max_bytes=10**9)
    rb.xadd(DEAD, {"body": b"old" * 100, "reason": b"r"})  # no byte count yet
    broker.ensure_groups(["default"])
    rb.xadd(P5, {"m": b"\xff"})
    (d,) = broker.fetch("me", ["default"], 1, 0)
    broker.dead_letter("me", d, "bad", "?", "?")
    assert int(rb.get(DEAD_BYTES)) == sum(entry_size(f) for _, f in rb.xrange(DEAD))


# -- also: ack, requeue and dead_letter only touch entries the caller still owns -----------------
def test_lapsed_lease_entries_are_left_to_their_new_owner(redis_url, rb, caplog):
    broker = RedisBroker(redis_url)
    broker.ensure_groups(["default"])
    for i in range(3):
        rb.xadd(P5, {"m": f"msg{i}".encode()})
    mine, lost_ack, lost_other = broker.fetch("a", ["default"], 3, 0)
    # b takes over two of a's entries (a's lease lapsed)
    rb.xclaim(P5, GROUP, "b", 0, [lost_ack.entry_id, lost_other.entry_id])
    with caplog.at_level("WARNING", logger="flask_taskq.worker"):
        assert broker.ack("a", [mine, lost_ack]) == [lost_ack]
        assert broker.requeue("a", [lost_other]) == [lost_other]
        assert broker.dead_letter("a", lost_other, "bad", "?", "?") == 0
    assert sum("no longer holds them" in m for m in caplog.messages) == 3
    assert [e.decode() for e, _ in rb.xrange(P5)] == [
        lost_ack.entry_id,
        lost_other.entry_id,
    ]  # no copy made
    assert rb.xlen(DEAD) == 0
    pending = rb.xpending_range(P5, GROUP, "-", "+", 10)
    assert sorted((p["message_id"].decode(), p["consumer"].decode()) for p in pending) == sorted(
        [(lost_ack.entry_id, "b"), (lost_other.entry_id, "b")]
    )
    # the owner finishes them as usual
    assert broker.ack("b", [lost_ack, lost_other]) == []
    assert rb.xlen(P5) == 0


def test_a_worker_does_not_ack_a_task_another_worker_took_over(app, start_worker, rb):
    """A real worker whose running task was taken over (its lease lapsed: XCLAIM here)
    finishes it but leaves the entry to its new owner, and says so once."""
    worker = start_worker("-P", "solo")
    with app.app_context():
        res = mark.delay("taken", seconds=1.5)
    wait_until(lambda: rb.hget("test:started", "taken"), message="the task started")
    (entry,) = rb.xpending_range(P5, GROUP, "-", "+", 10)
    rb.xclaim(P5, GROUP, "b", 0, [entry["message_id"]])
    with app.app_context():
        assert res.get(timeout=10) == "taken"
    worker.wait_for_log("Did not acknowledge 1 message(s)")
    (still,) = rb.xpending_range(P5, GROUP, "-", "+", 10)
    assert (still["message_id"], still["consumer"]) == (entry["message_id"], b"b")
    assert [e for e, _ in rb.xrange(P5)] == [entry["message_id"]]


def test_ack_after_redis_forgot_its_scripts(redis_url, rb):
    broker = RedisBroker(redis_url)
    broker.ensure_groups(["default"])
    rb.xadd(P5, {"m": b"a"})
    (d,) = broker.fetch("a", ["default"], 1, 0)
    rb.script_flush()  # Redis forgot the script: loaded again, then acked
    assert broker.ack("a", [d]) == []
    assert rb.xlen(P5) == 0


def test_reschedule_leaves_an_entry_another_worker_took_over(redis_url, rb, caplog):
    """A retry (or a rate-limit deferral) written after the lease lapsed must not add a
    second copy of the task beside the new owner's."""
    broker = RedisBroker(redis_url)
    broker.ensure_groups(["default"])
    rb.xadd(P5, {"m": b"mine"})
    rb.xadd(P5, {"m": b"lost"})
    mine, lost = broker.fetch("a", ["default"], 2, 0)
    rb.xclaim(P5, GROUP, "b", 0, [lost.entry_id])
    with caplog.at_level("WARNING", logger="flask_taskq.worker"):
        skipped = broker.reschedule("a", [(mine, b"mine-2", 0.0), (lost, b"lost-2", 0.0)])
    assert skipped == [lost]
    assert sum("no longer holds them" in m for m in caplog.messages) == 1
    bodies = [fields[b"m"] for _, fields in rb.xrange(P5)]
    assert bodies == [b"lost", b"mine-2"]  # no "lost-2": b still runs the original
    (pending,) = rb.xpending_range(P5, GROUP, "-", "+", 10)
    assert (pending["message_id"].decode(), pending["consumer"]) == (lost.entry_id, b"b")
