"""Sharded queues (``TASKQ_QUEUE_SHARDS``): one logical queue spread over several queues
whose keys hash to different slots, on a real Redis Cluster and on one Redis."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable

from flask_taskq.broker.redis import RedisBroker
from flask_taskq.redis_common import connect
from tests.apps.sharded_app import add, create_app, flaky
from tests.conftest import WorkerProcess

APP = "tests.apps.sharded_app:create_app"
SHARDS = {"default": 6}


def _workers(
    start_worker: Callable[..., WorkerProcess], url: str, count: int
) -> list[WorkerProcess]:
    env = {
        "TASKQ_BROKER_URL": url,
        "TASKQ_RESULT_BACKEND": url,
        "TASKQ_QUEUE_SHARDS": json.dumps(SHARDS),
    }
    return [start_worker("-P", "threads", "-c", "4", app=APP, env=env) for _ in range(count)]


def _start_together(url: str, count: int) -> list[WorkerProcess]:
    """``count`` worker processes started at once (each ready when returned)."""
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": url,
        "TASKQ_RESULT_BACKEND": url,
        "TASKQ_QUEUE_SHARDS": json.dumps(SHARDS),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "flask", "--app", APP, "taskq", "worker", "-l", "info"]
    workers = [WorkerProcess([*cmd, "-P", "threads", "-c", "4"], env) for _ in range(count)]
    for worker in workers:
        worker.wait_for_log(" ready")
    return workers


def test_the_shards_of_a_queue_live_on_every_master(cluster_url: str) -> None:
    broker = RedisBroker(cluster_url, queue_shards=SHARDS)
    client = connect(cluster_url)
    try:
        names = broker.shard_names("default")
        assert names == ["default"] + [f"default~{k}" for k in range(1, 6)]
        nodes = {client.get_node_from_key(broker.keys.stream(n, 5)).name for n in names}
        assert len(nodes) == 3
    finally:
        client.close()
        broker.close()


def test_3000_tasks_over_two_workers_each_done_once_every_shard_used(
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    app = create_app(
        TASKQ_BROKER_URL=cluster_url, TASKQ_RESULT_BACKEND=cluster_url, TASKQ_QUEUE_SHARDS=SHARDS
    )
    broker = app.extensions["taskq"].broker
    with app.app_context():
        results = []
        for start in range(0, 3000, 500):
            results += add.delay_many([(i, 0) for i in range(start, start + 500)])
        per_shard = broker.shard_stats("default")
        assert sorted(per_shard) == sorted(broker.shard_names("default"))
        assert all(stats.ready == 500 for stats in per_shard.values()), per_shard
        assert broker.queue_stats(["default"])["default"].ready == 3000
        workers = _start_together(cluster_url, 2)
        try:
            assert [r.get(timeout=120) for r in results] == list(range(3000))
        finally:
            for worker in workers:
                worker.kill_group()
    runs = Counter(
        found
        for worker in workers
        for found in re.findall(r"sharded\.add\[([0-9a-f-]+)\] succeeded", worker.log)
    )
    assert set(runs) == {r.id for r in results}
    assert set(runs.values()) == {1}


def test_retries_with_countdown_land_on_shards(
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    app = create_app(
        TASKQ_BROKER_URL=cluster_url, TASKQ_RESULT_BACKEND=cluster_url, TASKQ_QUEUE_SHARDS=SHARDS
    )
    _workers(start_worker, cluster_url, 1)
    with app.app_context():
        results = [flaky.delay(i) for i in range(30)]
        countdowns = [add.apply_async((i, 1), countdown=0.3) for i in range(12)]
        assert [r.get(timeout=60) for r in results] == list(range(30))
        assert [r.get(timeout=60) for r in countdowns] == [i + 1 for i in range(12)]


def test_a_sharded_queue_on_one_redis(
    redis_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = create_app(
        TASKQ_BROKER_URL=redis_url, TASKQ_RESULT_BACKEND=redis_url, TASKQ_QUEUE_SHARDS=SHARDS
    )
    _workers(start_worker, redis_url, 1)
    with app.app_context():
        results = [add.delay(i, 1) for i in range(60)]
        assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(60)]


def test_dead_letters_of_a_sharded_queue(redis_url: str) -> None:
    broker = RedisBroker(redis_url, queue_shards={"default": 3})
    try:
        broker.ensure_groups(["default"])
        for i in range(6):
            broker.enqueue("default", 5, json.dumps({"i": i}).encode())
        got = broker.fetch("c", ["default"], 10, 0)
        assert len(got) == 6
        assert {d.queue for d in got} == {"default"}
        assert len({broker._locate(d)[0] for d in got}) == 3
        for d in got:
            broker.dead_letter("c", d, "test", "t", f"id-{d.entry_id}")
        assert broker.dead_letter_count("default") == 6
        assert broker.queue_stats(["default"])["default"].dead == 6
        assert broker.dead_letter_queues() == ["default"]
        rows = broker.dead_letters("default", count=4)
        assert len(rows) == 4
        older = broker.dead_letters("default", count=10, before=str(rows[-1]["entry_id"]))
        assert len(older) == 2
        ids = [str(r["entry_id"]) for r in rows + older]
        assert all(broker.dead_letter_get("default", i) is not None for i in ids)
        assert broker.requeue_dead("default", ids[:3]) == 3
        assert broker.delete_dead("default", ids[3:5]) == 2
        assert broker.purge_dead("default") == 1
        assert broker.queue_stats(["default"])["default"].ready == 3
        assert broker.purge("default") == 3
    finally:
        broker.close()
