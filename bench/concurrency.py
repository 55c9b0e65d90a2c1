"""Throughput of per-key concurrency limits, as ratios to the same task without one.

    .venv/bin/python bench/concurrency.py [--n 2000] [--runs 3]

One ``flask taskq worker -P threads -c 8`` process on a private redis-server runs N
messages of a trivial task three ways, alternated over the runs: without a limit, with a
limit it never reaches (a slot taken and given back per task: two ``concurrency.lua``
calls), and with two per key over ten keys (most messages parked, acknowledged, woken and
sent again). Each figure is N over the time from the first send to the last completion.
It prints the medians and their ratios to the first, and checks nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import start_redis, wait_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server, url = start_redis()
    os.environ["TASKQ_BROKER_URL"] = url
    import redis

    from bench.concurrency_app import DONE, create_app, free, narrow, wide

    r = redis.Redis.from_url(url)
    app = create_app()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "flask", "--app", "bench.concurrency_app:create_app"]
    worker = subprocess.Popen(
        [*cmd, "taskq", "worker", "-P", "threads", "-c", "8", "-l", "warning"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tasks = {"no limit": free, "limit never reached": wide, "2 per key, parking": narrow}
    rates: dict[str, list[float]] = {name: [] for name in tasks}
    try:
        with app.app_context():
            free.delay(0)  # the worker is up once this ran
            if not wait_for(lambda: r.get(DONE) == b"1", 60):
                raise SystemExit("the worker did not start")
            for _ in range(args.runs):
                for name, task in tasks.items():
                    r.set(DONE, 0)
                    start = time.perf_counter()
                    task.delay_many((i,) for i in range(args.n))
                    if not wait_for(lambda: int(r.get(DONE) or 0) >= args.n, 300, 0.005):
                        raise SystemExit(f"{name}: not done in 300 s")
                    rates[name].append(args.n / (time.perf_counter() - start))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        server.terminate()
        server.wait()
    base = statistics.median(rates["no limit"])
    print(f"N = {args.n}, {args.runs} runs alternated, one worker -P threads -c 8")
    for name, values in rates.items():
        median = statistics.median(values)
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        print(f"  {name:22} {median:8,.0f}/s  ({spread})  ratio {median / base:.2f}")


if __name__ == "__main__":
    main()
