"""``TASKQ_WAIT_REPLICAS`` before an ack (issue 15 item 4): a worker's ack flush ends with
one ``WAIT`` on the acks' connection, so when it returns the acks (and the results written
before them on that Redis) are on the replicas. Real master + replica redis-servers
started here; a SIGSTOPped replica slows each flush by the WAIT timeout, is logged once,
and loses nothing."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import Callable, Iterator

import pytest
import redis

from flask_taskq.broker.redis import ACK_WAIT_TIMEOUT, RedisBroker
from tests.apps.backlog_app import add, create_app
from tests.cluster_fixtures import RedisClusterProcesses
from tests.conftest import RedisServer, WorkerProcess, free_port, wait_until

APP = "tests.apps.backlog_app:create_app"
WARNING = "WAIT after acks: 0 of 1 replica(s)"


class Replicated:
    """A master and one replica (``--replicaof``), both private redis-servers."""

    def __init__(self) -> None:
        self.master = RedisServer()
        self.master.start()
        self.port = free_port()
        self.replica = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--replicaof",
                "127.0.0.1",
                str(self.master.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.replica_client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(self._linked, timeout=30, message="the replica in sync with the master")

    def _linked(self) -> bool:
        try:
            info = self.replica_client.info("replication")
        except redis.ConnectionError:
            return False
        return info.get("master_link_status") == "up"

    def waits(self) -> int:
        """``WAIT`` commands the master ran."""
        stats = self.master.client().info("commandstats")
        return int(stats.get("cmdstat_wait", {}).get("calls", 0))

    def stop(self) -> None:
        if self.replica.poll() is None:
            self.replica.send_signal(signal.SIGCONT)
            self.replica.kill()
            self.replica.wait()
        self.master.stop()


@pytest.fixture
def replicated() -> Iterator[Replicated]:
    pair = Replicated()
    yield pair
    pair.stop()


def test_a_returned_ack_is_on_the_replica(replicated: Replicated) -> None:
    broker = RedisBroker(replicated.master.url, wait_replicas=1)
    try:
        broker.ensure_groups(["default"])
        broker.enqueue_many([("default", 5, b"body", None)] * 4)
        # The first ack on a fresh server loads the script (and sends the batch again).
        assert broker.ack("c1", broker.fetch("c1", ["default"], 1, 1.0)) == []
        deliveries = broker.fetch("c1", ["default"], 3, 1.0)
        before = replicated.waits()
        assert broker.ack("c1", deliveries) == []
        assert replicated.waits() == before + 1  # one WAIT for the batch
        # WAIT 1 returned 1: the replica applied the ack (XACK + XDEL) already.
        stream = broker.keys.stream("default", 5)
        assert replicated.replica_client.xlen(stream) == 0
        assert replicated.replica_client.xpending(stream, "workers")["pending"] == 0
    finally:
        broker.close()


def test_too_few_replicas_slow_the_flush_and_are_said_once(
    replicated: Replicated, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(replicated.master.url, wait_replicas=2)  # there is one
    try:
        broker.ensure_groups(["default"])
        with caplog.at_level(logging.INFO, logger="flask_taskq.worker"):
            for _ in range(3):
                broker.client.xadd(broker.keys.stream("default", 5), {"m": b"x"})
                [delivery] = broker.fetch("c1", ["default"], 1, 1.0)
                assert broker.ack("c1", [delivery]) == []  # the ack stands
        warnings = [r for r in caplog.records if "WAIT after acks" in r.getMessage()]
        assert len(warnings) == 1 and "1 of 2 replica(s)" in warnings[0].getMessage()
        assert broker.queue_stats(["default"])["default"].unfinished == 0
    finally:
        broker.close()


def test_workers_go_on_while_the_replica_is_stopped(
    replicated: Replicated, start_worker: Callable[..., WorkerProcess]
) -> None:
    url = replicated.master.url
    env = {"TASKQ_BROKER_URL": url, "TASKQ_RESULT_BACKEND": url, "TASKQ_WAIT_REPLICAS": "1"}
    worker = start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    app = create_app(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=url)  # sends do not wait
    broker = app.extensions["taskq"].broker

    def drained() -> bool:
        return broker.queue_stats(["default"])["default"].unfinished == 0

    with app.app_context():
        before = replicated.waits()
        assert [r.get(timeout=30) for r in add.delay_many([(i, 1) for i in range(20)])] == [
            i + 1 for i in range(20)
        ]
        wait_until(drained, timeout=30, message="every message acked")
        assert replicated.waits() > before and WARNING not in worker.log

        replicated.replica.send_signal(signal.SIGSTOP)
        stopped = replicated.waits()
        for burst in range(3):  # several flushes, each waiting for the timeout
            results = add.delay_many([(i, burst) for i in range(10)])
            assert [r.get(timeout=30) for r in results] == [i + burst for i in range(10)]
            wait_until(drained, timeout=30, message="acked although the replica is stopped")
        assert replicated.waits() >= stopped + 2
        assert worker.log.count("WAIT after acks") == 1, worker.log

        replicated.replica.send_signal(signal.SIGCONT)
        wait_until(
            lambda: add.delay(1, 1).get(timeout=30) == 2 and "acknowledge again" in worker.log,
            timeout=30 + 10 * ACK_WAIT_TIMEOUT,
            message="the replica acknowledging again",
        )


def test_on_a_cluster_each_master_waits_for_its_replica(
    redis_cluster: RedisClusterProcesses,
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A sharded queue's acks go to every master: each batch WAITs on each master that got
    acks, on the connection that wrote them."""
    shards = {"default": 6}
    env = {
        "TASKQ_BROKER_URL": cluster_url,
        "TASKQ_RESULT_BACKEND": cluster_url,
        "TASKQ_WAIT_REPLICAS": "1",
        "TASKQ_QUEUE_SHARDS": json.dumps(shards),
    }
    masters = redis_cluster.masters()

    def waits() -> list[int]:
        stats = [m.client().info("commandstats") for m in masters]
        return [int(s.get("cmdstat_wait", {}).get("calls", 0)) for s in stats]

    before = waits()
    worker = start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    app = create_app(
        TASKQ_BROKER_URL=cluster_url, TASKQ_RESULT_BACKEND=cluster_url, TASKQ_QUEUE_SHARDS=shards
    )
    with app.app_context():
        results = add.delay_many([(i, 1) for i in range(60)])
        assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(60)]
        broker = app.extensions["taskq"].broker
        wait_until(
            lambda: broker.queue_stats(["default"])["default"].unfinished == 0,
            timeout=30,
            message="every message acked",
        )
    assert all(after > was for after, was in zip(waits(), before, strict=True))
    assert "WAIT after acks" not in worker.log
