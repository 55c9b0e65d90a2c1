"""``async def`` tasks: 1,000 tasks that each ``await asyncio.sleep(0.1)`` on one worker
process (``-P solo``), results stored.

    .venv/bin/python bench/async_tasks.py [--n 1000] [--runs 3]

The tasks are queued before the worker starts; the wall time runs from the worker's
"ready" line to the last result. Run one after the other they would take n x 0.1 s (100 s);
with ``--async-concurrency`` C they take about n x 0.1 / C s plus the queue's overhead.
Each concurrency is run ``--runs`` times, alternated. It starts its own redis-server on a
free port, prints numbers and checks nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import start_redis, wait_for  # noqa: E402
from flask_taskq import TaskQueue  # noqa: E402

tq = TaskQueue()


@tq.task(name="bench.async_tasks.asleep")  # the same name when run as __main__
async def asleep(i: int) -> int:
    """The benchmark's task: awaits 0.1 s."""
    await asyncio.sleep(0.1)
    return i


def create_app() -> Flask:
    app = Flask("async_bench")
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    tq.init_app(app)
    return app


def run_once(url: str, n: int, concurrency: int) -> float | str:
    """Queue ``n`` tasks, start a worker, return the wall time to the last result."""
    import redis

    redis.Redis.from_url(url).flushdb()
    app = create_app()
    with app.app_context():
        results = asleep.delay_many((i,) for i in range(n))
    env = {**os.environ, "TASKQ_BROKER_URL": url, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "flask", "--app", "bench.async_tasks:create_app", "taskq"]
    cmd += ["worker", "-P", "solo", "-l", "info", "--async-concurrency", str(concurrency)]
    worker = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0
    )
    try:
        assert worker.stdout is not None
        for raw in worker.stdout:
            if b" ready" in raw:
                break
        else:
            return "no figure: the worker exited before it was ready"
        start = time.perf_counter()
        drained = drain_output(worker)
        with app.app_context():
            for res in results:
                res.get(timeout=120)
        elapsed = time.perf_counter() - start
        drained.join(0)
        return elapsed
    finally:
        worker.terminate()
        if wait_for(lambda: worker.poll() is not None, 30) is None:
            worker.kill()
        worker.wait()


def drain_output(worker: subprocess.Popen[bytes]) -> threading.Thread:
    """Read the worker's output in a thread, so that its log never blocks it."""

    def drain() -> None:
        assert worker.stdout is not None
        for _ in worker.stdout:
            pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="100,1000")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    server, url = start_redis()
    os.environ["TASKQ_BROKER_URL"] = url
    figures: dict[int, list[float]] = {c: [] for c in levels}
    try:
        for run in range(args.runs):
            for c in levels:
                value = run_once(url, args.n, c)
                if isinstance(value, str):
                    print(f"run {run + 1}, --async-concurrency {c}: {value}")
                    continue
                figures[c].append(value)
                print(f"run {run + 1}, --async-concurrency {c}: {value:.2f} s")
    finally:
        server.terminate()
        server.wait()
    print()
    print(f"{args.n} tasks awaiting asyncio.sleep(0.1), one worker process (-P solo)")
    print(f"one after the other: {args.n * 0.1:.0f} s")
    print("| --async-concurrency | wall time, median (min-max) | ideal |")
    print("|---|---|---|")
    for c in levels:
        values = figures[c]
        ideal = args.n * 0.1 / min(c, args.n)
        if values:
            print(
                f"| {c} | {statistics.median(values):.2f} s "
                f"({min(values):.2f}-{max(values):.2f}, {len(values)} runs) | {ideal:.1f} s |"
            )
        else:
            print(f"| {c} | no figure | {ideal:.1f} s |")


if __name__ == "__main__":
    main()
