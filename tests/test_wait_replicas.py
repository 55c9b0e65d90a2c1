"""``TASKQ_WAIT_REPLICAS``: a send returns once N replicas hold the message (Redis WAIT on
the send's connection), on one Redis and on a real Redis Cluster; fewer replicas in time
fail the send with ``maybe_sent``. With it, every send acknowledged before the master of
the queue is SIGKILLed runs after the failover."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from flask_taskq import BrokerConnectionError
from flask_taskq.result import AsyncResult
from tests.apps.flows_app import add, create_app
from tests.cluster_fixtures import RedisClusterProcesses
from tests.conftest import WorkerProcess, wait_until

APP = "tests.apps.flows_app:create_app"


def test_without_a_replica_the_send_fails_as_maybe_sent(redis_url: str) -> None:
    # WAIT gets 0.7 of the timeout: the rest is left for its reply on a loaded machine.
    app = create_app(TASKQ_BROKER_URL=redis_url, TASKQ_WAIT_REPLICAS=1, TASKQ_ENQUEUE_TIMEOUT=1.0)
    with app.app_context():
        with pytest.raises(BrokerConnectionError) as caught:
            add.delay(1, 2)
        assert caught.value.maybe_sent
        assert "TASKQ_WAIT_REPLICAS" in str(caught.value)
        stats = app.extensions["taskq"].broker.queue_stats(["default"])["default"]
        assert stats.ready == 1  # the master has it


@pytest.mark.parametrize("bulk", [False, True])
def test_on_a_cluster_sends_wait_for_the_replica(
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
    bulk: bool,
) -> None:
    app = create_app(
        TASKQ_BROKER_URL=cluster_url, TASKQ_RESULT_BACKEND=cluster_url, TASKQ_WAIT_REPLICAS=1
    )
    env = {"TASKQ_BROKER_URL": cluster_url, "TASKQ_RESULT_BACKEND": cluster_url}
    start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    with app.app_context():
        if bulk:
            results = add.delay_many([(i, 1) for i in range(20)])
        else:
            results = [add.delay(i, 1) for i in range(20)]
        assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(20)]


def test_on_a_cluster_more_replicas_than_there_are_fail_the_send(
    cluster_url: str,
) -> None:
    app = create_app(TASKQ_BROKER_URL=cluster_url, TASKQ_WAIT_REPLICAS=2, TASKQ_ENQUEUE_TIMEOUT=0.3)
    with app.app_context():
        with pytest.raises(BrokerConnectionError) as caught:
            add.delay(1, 2)
        assert caught.value.maybe_sent


def test_every_acknowledged_send_runs_after_the_master_is_killed(
    own_cluster: RedisClusterProcesses,
    redis_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    url = own_cluster.url
    # Results on a separate Redis: the guarantee under test is the messages'.
    env = {"TASKQ_BROKER_URL": url, "TASKQ_RESULT_BACKEND": redis_url}
    for _ in range(2):
        start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    app = create_app(
        TASKQ_BROKER_URL=url,
        TASKQ_RESULT_BACKEND=redis_url,
        TASKQ_WAIT_REPLICAS=1,
        TASKQ_ENQUEUE_TIMEOUT=1,
    )
    acked: list[tuple[int, AsyncResult]] = []
    refused = 0
    stop = threading.Event()

    def send() -> None:
        nonlocal refused
        with app.app_context():
            i = 0
            while not stop.is_set():
                try:
                    acked.append((i, add.delay(i, 0)))
                except BrokerConnectionError:
                    refused += 1
                    time.sleep(0.05)
                i += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until(lambda: len(acked) >= 200, timeout=30, message="200 sends")
        victim = own_cluster.master_of("taskq:{default}:p5")
        victim.stop()  # SIGKILL, mid-send
        wait_until(
            lambda: own_cluster.master_of("taskq:{default}:p5").port != victim.port,
            timeout=30,
            interval=0.2,
            message="the promotion of the replica",
        )
        victim.start()  # comes back as the new master's replica: WAIT 1 can succeed again
        count = len(acked)
        wait_until(lambda: len(acked) >= count + 200, timeout=60, message="200 more sends")
    finally:
        stop.set()
        sender.join(30)
    with app.app_context():
        for i, result in acked:
            assert result.get(timeout=60) == i
