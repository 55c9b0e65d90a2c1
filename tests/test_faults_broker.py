"""Broker faults of issue 13, each against a real redis-server and, where the fault shows
through a worker, a real worker process: stream entries without (or not first with) the
``m`` field, revocations from a sender whose clock is behind, the dead-letter store's byte
bound, and acks/requeues/dead letters of entries whose lease another worker took over."""

from __future__ import annotations

import os
import time

import pytest
import redis
from flask import Flask

from flask_taskq import TaskRevokedError
from flask_taskq.broker.redis import GROUP
from tests.apps import control
from tests.apps.basic import add, tq
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
        app.config["TASKQ_DEAD_LETTER_MAX_BYTES"] = int(
            os.environ["TASKQ_DEAD_LETTER_MAX_BYTES"])
    tq.init_app(app)
    return app


@pytest.fixture(name="rb")
def bytes_client(redis_url):
    return redis.Redis.from_url(redis_url)


def blocked_in_xreadgroup(rb: redis.Redis) -> bool:
    """True while some client waits in a blocking XREADGROUP (a worker with nothing to do)."""
    return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")
               for c in rb.client_list())


def entry_size(fields: dict[bytes, bytes]) -> int:
    return sum(len(k) + len(v) for k, v in fields.items())


# -- item 1 (broker part): an entry without ``m`` through the blocking read ---------------------
@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_entry_without_m_through_the_blocking_read_is_dead_lettered(app, start_worker, rb,
                                                                    pool):
    worker = start_worker("-P", pool, "-c", "1")
    with app.app_context():
        assert add.delay(1, 2).get(timeout=10) == 3
    wait_until(lambda: blocked_in_xreadgroup(rb), message="the worker blocked in XREADGROUP")
    rb.xadd(P5, {"x": b"1"})
    wait_until(lambda: rb.xlen(DEAD) == 1, message="the entry dead-lettered")
    (_, fields), = rb.xrange(DEAD)
    assert fields[b"body"] == b""
    assert b"undecodable" in fields[b"reason"]
    assert rb.xlen(P5) == 0  # it left the queue
    with app.app_context():
        assert add.delay(2, 3).get(timeout=10) == 5  # the executor lives on
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.log


# -- item 5: the field named ``m``, not the first one ------------------------------------------
def _move_m_after_x(rb: redis.Redis) -> None:
    """Rewrite the one entry of P5 as ``x 1 m <body>``."""
    (entry_id, fields), = rb.xrange(P5)
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

    future = r.time()[0] + 3600.0
    r.zadd("taskq:revoked", {"from-the-future": future})
    Revocations(redis.Redis.from_url(redis_url), Keys(), 86400).revoke(["next"])
    assert r.zscore("taskq:revoked", "next") > future
