"""flask-taskq on a Redis Cluster against one Redis (issue 15). From the repository root:

    .venv/bin/python bench/cluster.py [--tasks 30000] [--workers 2]

Starts a private 3-master + 3-replica cluster (``tests/cluster_fixtures.py``) and a private
single redis-server, and on each: ``.delay()`` calls per second (one at a time), bulk
sends per second (``delay_many`` in chunks of 100), and the drain of ``--tasks`` no-op tasks
by ``--workers`` worker processes (``-P threads -c 4``), with the Redis CPU spent per task
(``used_cpu_sys + used_cpu_user`` of ``INFO cpu``, before and after, summed over the
masters, and the busiest master alone). Prints a table; asserts nothing. The machine's
cores are shared by Redis, the workers and this script, so wall-clock rates are not the
figure to scale from: the Redis CPU per task is (docs/scaling.rst).

``.delay()`` with ``TASKQ_WAIT_REPLICAS=1`` is measured on the cluster only (the single
server has no replica). The third column sends to a queue of 6 shards
(``TASKQ_QUEUE_SHARDS``), spread over the three masters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster_fixtures import RedisClusterProcesses  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402


def _cpu(ports: list[int]) -> list[float]:
    out = []
    for port in ports:
        info = redis.Redis(port=port).info("cpu")
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


def measure(
    url: str, ports: list[int], tasks: int, workers: int, replicas: bool, shards: int = 1
) -> dict[str, float]:
    os.environ["TASKQ_BROKER_URL"] = url
    os.environ["BENCH_QUEUE_SHARDS"] = json.dumps({"default": shards} if shards > 1 else {})
    from bench.cluster_app import create_app, noop

    app = create_app()
    state = app.extensions["taskq"]
    out: dict[str, float] = {}
    with app.app_context():
        n = 5000
        start = time.perf_counter()
        for _ in range(n):
            noop.delay()
        out["delay/s"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n // 100):
            noop.delay_many([()] * 100)
        out["bulk/s"] = n / (time.perf_counter() - start)
        if replicas:
            waiting = create_app(TASKQ_WAIT_REPLICAS=1)
            with waiting.app_context():
                start = time.perf_counter()
                for _ in range(n):
                    noop.delay()
                out["delay/s, TASKQ_WAIT_REPLICAS=1"] = n / (time.perf_counter() - start)
            waiting.extensions["taskq"].broker.close()
        else:
            out["delay/s, TASKQ_WAIT_REPLICAS=1"] = float("nan")
        state.broker.purge("default")  # every shard
        for _ in range(tasks // 100):
            noop.delay_many([()] * 100)
    env = {**os.environ, "TASKQ_BROKER_URL": url}
    cmd = [sys.executable, "-m", "flask", "--app", "bench.cluster_app:create_app", "taskq"]
    before = _cpu(ports)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*cmd, "worker", "-P", "threads", "-c", "4", "-l", "warning"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while True:
            stats = state.broker.queue_stats(["default"])["default"]
            if stats.ready + stats.leased == 0:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            p.kill()
            p.wait()
    spent = [b - a for a, b in zip(before, _cpu(ports), strict=True)]
    out["drain/s (incl. start)"] = tasks / elapsed
    out["redis us/task, all masters"] = sum(spent) / tasks * 1e6
    out["redis us/task, busiest master"] = max(spent) / tasks * 1e6
    state.broker.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    single = RedisServer()
    single.start()
    with tempfile.TemporaryDirectory() as directory:
        cluster = RedisClusterProcesses(Path(directory))
        cluster.start()
        try:
            rows = {
                "one Redis": measure(single.url, [single.port], args.tasks, args.workers, False),
                "cluster, 3 masters": measure(
                    cluster.url, [n.port for n in cluster.masters()], args.tasks, args.workers, True
                ),
                "cluster, queue of 6 shards": measure(
                    cluster.url,
                    [n.port for n in cluster.masters()],
                    args.tasks,
                    args.workers,
                    True,
                    shards=6,
                ),
            }
        finally:
            cluster.stop()
            single.stop()
    names = list(next(iter(rows.values())))
    print(f"| figure | {' | '.join(rows)} |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{r[name]:,.1f}" for r in rows.values()) + " |")


if __name__ == "__main__":
    main()
