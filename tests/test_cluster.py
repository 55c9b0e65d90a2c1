"""flask-taskq on a real Redis Cluster (3 masters + 3 replicas, ``tests/cluster_fixtures``):
``redis+cluster://`` URLs, the one-line refusal of a ``redis://`` URL at a cluster node,
round trips through real worker processes, queues on different nodes, a chord of 50 over
two workers, and ``flask taskq inspect``.

The feature tests of ``test_transport_both``, ``test_store_flows`` and ``test_store_state``
run on the cluster too: ``test_cluster_features.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from flask_taskq import chord
from flask_taskq.broker.redis import RedisBroker
from flask_taskq.keys import GROUP
from flask_taskq.redis_common import ClusterURLRequired, connect, is_cluster
from tests.apps.flows_app import add, collect, create_app
from tests.cluster_fixtures import RedisClusterProcesses
from tests.conftest import ROOT, WorkerProcess, wait_until

APP = "tests.apps.flows_app:create_app"


@pytest.fixture
def cluster_worker(
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> Callable[..., WorkerProcess]:
    """Start a real ``flask taskq worker`` of the flows app on the cluster (broker and
    results)."""

    def start(*args: str) -> WorkerProcess:
        env = {"TASKQ_BROKER_URL": cluster_url, "TASKQ_RESULT_BACKEND": cluster_url}
        return start_worker("-P", "threads", "-c", "4", *args, app=APP, env=env)

    return start


@pytest.fixture
def flows(cluster_url: str) -> Iterator[Flask]:
    app = create_app(TASKQ_BROKER_URL=cluster_url, TASKQ_RESULT_BACKEND=cluster_url)
    with app.app_context():
        yield app


def _queues_on_distinct_masters(url: str, count: int) -> list[str]:
    """``count`` queue names whose keys live on ``count`` different masters."""
    client = connect(url)
    by_node: dict[str, str] = {}
    for i in range(1000):
        name = f"q{i}"
        node = client.get_node_from_key(f"taskq:{{{name}}}:p5").name
        by_node.setdefault(node, name)
        if len(by_node) == count:
            break
    client.close()
    assert len(by_node) == count, by_node
    return list(by_node.values())


# -- URLs -------------------------------------------------------------------------------------
def test_a_cluster_url_gives_a_cluster_client(cluster_url: str) -> None:
    client = connect(cluster_url)
    try:
        assert is_cluster(client)
        assert client.ping()
        assert len(client.get_primaries()) == 3
    finally:
        client.close()


def test_one_startup_node_is_enough(redis_cluster: RedisClusterProcesses) -> None:
    client = connect(f"redis+cluster://{redis_cluster.nodes[0].address}/")
    try:
        assert len(client.get_primaries()) == 3
    finally:
        client.close()


@pytest.mark.parametrize(
    "url",
    ["redis+cluster:///", "redis+cluster://127.0.0.1:7000/3"],
)
def test_bad_cluster_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        connect(url)


def test_a_plain_url_at_a_cluster_node_fails_with_a_typed_error(
    redis_cluster: RedisClusterProcesses,
) -> None:
    node = redis_cluster.nodes[0].address
    broker = RedisBroker(f"redis://{node}/0")
    try:
        with pytest.raises(ClusterURLRequired) as caught:
            broker.enqueue("default", 5, b"x")
        message = str(caught.value)
        assert f"redis+cluster://{node}/" in message
        assert "\n" not in message
    finally:
        broker.close()


def test_a_plain_url_at_a_cluster_node_fails_the_worker_with_one_line(
    redis_cluster: RedisClusterProcesses,
) -> None:
    node = redis_cluster.nodes[0].address
    env = {**os.environ, "TASKQ_BROKER_URL": f"redis://{node}/0"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "worker", "-P", "solo"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "redis+cluster://" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


# -- tasks through real workers ------------------------------------------------------------------
def test_round_trip_through_a_worker(
    flows: Flask, cluster_worker: Callable[..., WorkerProcess]
) -> None:
    cluster_worker()
    assert add.delay(2, 3).get(timeout=20) == 5


def test_round_trip_through_a_prefork_worker(
    flows: Flask,
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    env = {"TASKQ_BROKER_URL": cluster_url, "TASKQ_RESULT_BACKEND": cluster_url}
    start_worker("-P", "prefork", "-c", "2", app=APP, env=env)
    results = [add.delay(i, 1) for i in range(10)]
    assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(10)]


def test_a_worker_serves_queues_on_every_master(
    flows: Flask,
    cluster_url: str,
    cluster_worker: Callable[..., WorkerProcess],
) -> None:
    queues = _queues_on_distinct_masters(cluster_url, 3)
    cluster_worker("-Q", ",".join(queues))
    results = [add.apply_async((i, i), queue=queues[i % 3]) for i in range(30)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(30)]


def test_delayed_tasks_on_queues_of_every_master(
    flows: Flask,
    cluster_url: str,
    cluster_worker: Callable[..., WorkerProcess],
) -> None:
    queues = _queues_on_distinct_masters(cluster_url, 3)
    cluster_worker("-Q", ",".join(queues))
    results = [add.apply_async((i, 1), queue=q, countdown=0.5) for i, q in enumerate(queues)]
    assert [r.get(timeout=30) for r in results] == [1, 2, 3]


def test_a_chord_of_50_over_two_workers(
    flows: Flask, cluster_worker: Callable[..., WorkerProcess]
) -> None:
    first, second = cluster_worker(), cluster_worker()
    res = chord([add.s(i, i) for i in range(50)], collect.s()).delay()
    assert res.get(timeout=60) == [2 * i for i in range(50)]
    assert first.proc.poll() is None and second.proc.poll() is None


def test_inspect_reads_the_cluster(
    flows: Flask,
    cluster_url: str,
    cluster_worker: Callable[..., WorkerProcess],
) -> None:
    cluster_worker()
    assert add.delay(1, 1).get(timeout=20) == 2
    add.apply_async((1, 2), countdown=3600)
    env = {**os.environ, "TASKQ_BROKER_URL": cluster_url, "TASKQ_RESULT_BACKEND": cluster_url}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "inspect"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "default" in done.stdout
    assert "Traceback" not in done.stderr


def test_results_wait_without_polling(
    flows: Flask,
    cluster_url: str,
    redis_cluster: RedisClusterProcesses,
) -> None:
    """``get()`` blocks on the task's done list: while no worker runs, a two-second wait
    costs a couple of commands on the node of the task's slot, not a loop of reads."""
    res = add.delay(1, 1)
    client = connect(cluster_url)
    node = client.get_node_from_key(f"taskq:result:{{{res.id}}}")
    client.close()
    plain = redis.Redis(host=node.host, port=node.port)
    plain.config_resetstat()
    with pytest.raises(Exception):  # noqa: B017 - flask_taskq.TimeoutError
        res.get(timeout=2)
    stats = plain.info("commandstats")
    calls = sum(
        v["calls"] for k, v in stats.items() if k.split("|")[0] in ("cmdstat_get", "cmdstat_blmove")
    )
    assert calls <= 6, stats


def test_the_monitor_lists_workers_and_recent_workflows(
    flows: Flask, cluster_worker: Callable[..., WorkerProcess]
) -> None:
    """Reads over keys of several slots (heartbeats, workflow graphs) are split by slot."""
    cluster_worker()
    cluster_worker()
    store = flows.extensions["taskq"].store
    wait_until(lambda: len(store.monitor.processes()) >= 2, timeout=20, message="two heartbeats")
    for n in (3, 4, 5):
        assert chord([add.s(i, i) for i in range(n)], collect.s()).delay().get(timeout=30)
    assert len(store.workflows.recent_graphs(10)) >= 3


def test_the_dashboard_pages_read_the_cluster(
    cluster_url: str,
    cluster_worker: Callable[..., WorkerProcess],
) -> None:
    from tests import test_dashboard

    cluster_worker()
    cluster_worker()
    app = test_dashboard.create_app(TASKQ_BROKER_URL=cluster_url, TASKQ_RESULT_BACKEND=cluster_url)
    with app.app_context():
        assert chord([add.s(i, i) for i in range(3)], collect.s()).delay().get(timeout=30)
    client = app.test_client()
    wait_until(
        lambda: len(app.extensions["taskq"].store.monitor.processes()) >= 2,
        timeout=20,
        message="two heartbeats",
    )
    for page in (
        "/taskq/",
        "/taskq/queues",
        "/taskq/workers",
        "/taskq/failures",
        "/taskq/periodic",
        "/taskq/workflows",
        "/taskq/metrics",
    ):
        response = client.get(page, headers=test_dashboard.AUTH)
        assert response.status_code == 200, (page, response.text[:500])
    assert "default" in client.get("/taskq/queues", headers=test_dashboard.AUTH).text


def test_dead_letters_and_maintenance_through_the_broker(cluster_url: str) -> None:
    """Every broker call a worker or a command makes, on queues of several masters."""
    queues = _queues_on_distinct_masters(cluster_url, 3)
    broker = RedisBroker(cluster_url)
    try:
        broker.ensure_groups(queues)
        for q in queues:
            for p in (1, 9):
                broker.enqueue(q, p, f'{{"q": "{q}", "p": {p}}}'.encode())
            broker.enqueue(q, 5, b"later", eta=time.time() + 3600)
        assert broker.known_queues() >= set(queues)
        stats = broker.queue_stats(queues)
        assert all(stats[q].ready == 2 and stats[q].delayed == 1 for q in queues)
        got = broker.fetch("c1", queues, 6, 0)
        assert len(got) == 6
        assert broker.renew("c1", got) == []
        assert broker.renew_consumers(["c1"], queues) >= 6
        assert broker.requeue("c1", got[:3]) == []
        assert broker.ack("c1", got[3:4]) == []
        assert broker.reschedule("c1", [(got[4], got[4].body, time.time() - 1)]) == []
        broker.promote(queues)
        trimmed = broker.dead_letter("c1", got[5], "test", "t", "id-1")
        assert trimmed == 0
        dead_queue = got[5].queue
        assert broker.dead_letter_queues() == [dead_queue]
        [row] = broker.dead_letters(dead_queue)
        assert broker.dead_letter_get(dead_queue, str(row["entry_id"])) is not None
        assert broker.requeue_dead(dead_queue, [str(row["entry_id"])]) == 1
        assert broker.dead_letter_count(dead_queue) == 0
        again = broker.fetch("c2", queues, 10, 0)
        assert len(again) == 5  # 3 requeued, 1 rescheduled and promoted, 1 dead and requeued
        broker.dead_letter("c2", again[0], "test", "t", "id-2")
        [row] = broker.dead_letters(again[0].queue)
        assert broker.delete_dead(again[0].queue, [str(row["entry_id"])]) == 1
        broker.dead_letter("c2", again[1], "test", "t", "id-3")
        assert broker.purge_dead(again[1].queue) == 1
        assert broker.reclaim("c3", queues, 0, 10)  # c2's leases, idle for 0 s
        # c2 holds nothing now: a clean-up (TASKQ_IDLE_CONSUMER_TTL) deletes it everywhere
        streams = [k for q in queues for k in broker.keys.streams(q) if broker.client.exists(k)]

        def consumers() -> set[str]:
            return {
                c["name"].decode() for k in streams for c in broker.client.xinfo_consumers(k, GROUP)
            }

        assert "c2" in consumers()
        broker.idle_consumer_ttl = 0.001
        assert broker.reclaim("c3", queues, 60, 10) == []
        assert "c2" not in consumers() and "c3" in consumers()
        broker.forget_consumer("c1", queues)
        assert sum(broker.purge(q) for q in queues) >= 3
        assert all(broker.queue_length(q) == 0 for q in queues)
    finally:
        broker.close()
