"""Broker faults of issue 13, each against a real redis-server and, where the fault shows
through a worker, a real worker process: stream entries without (or not first with) the
``m`` field, revocations from a sender whose clock is behind, the dead-letter store's byte
bound, and acks/requeues/dead letters of entries whose lease another worker took over."""

from __future__ import annotations

import os

import pytest
import redis
from flask import Flask

from flask_taskq.broker.redis import GROUP
from tests.apps.basic import add, tq
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
