"""Drain by one worker process with Redis 20 ms away, against the same on loopback (issue
15, item 6b). From the repository root:

    .venv/bin/python bench/latency.py [--rtt-ms 20] [--runs 3] [--n 10000]

It starts a private redis-server on a free loopback port and a :class:`DelayProxy` in
front of it that delays every chunk by half the round trip in each direction (the
kernel's ``tc netem`` would do the same where ``sch_netem`` is available; the proxy needs
nothing). The producer always talks to Redis directly; the worker (one ``-P solo`` process
of ``bench.app``, as in bench/throughput.py) talks either directly or through the proxy.
Each run measures both, in turn, for a task that ignores its result and one that stores
it. Prints each rate and the ratio delayed / loopback; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import app as bench_app  # noqa: E402
from bench import throughput  # noqa: E402
from bench.common import start_redis  # noqa: E402
from tests.delay_proxy import DelayProxy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="added round trip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000, help="tasks per drain")
    args = parser.parse_args()
    throughput.N = args.n
    os.environ["BENCH_DRAIN_N"] = str(args.n)

    server, url = start_redis()
    port = urlsplit(url).port
    assert port is not None
    proxy = DelayProxy(("127.0.0.1", port), delay=args.rtt_ms / 2000)
    slow_url = f"redis://127.0.0.1:{proxy.start()}/0"
    try:
        os.environ["TASKQ_BROKER_URL"] = url
        app = bench_app.create_app()
        r = bench_app.bench_redis(url)
        throughput.reset(r)
        print(
            f"drain by one solo worker, N={args.n:,}, runs={args.runs}: loopback vs "
            f"+{args.rtt_ms:g} ms round trip (delaying proxy)"
        )
        rates: dict[tuple[str, str], list[float]] = {}
        for run in range(1, args.runs + 1):
            for task in (bench_app.noop, bench_app.noop_result):
                for where, worker_url in (("loopback", url), ("delayed", slow_url)):
                    rate = throughput.measure_drain(app, r, worker_url, task)
                    if rate is not None:
                        rates.setdefault((task.__name__, where), []).append(rate)
                    shown = f"{rate:,.0f}/s" if rate is not None else "n/a"
                    print(f"  run {run}: {task.__name__:<12} {where:<9} {shown}", flush=True)
        print()
        print(f"{'task':<14}{'loopback /s':>14}{'delayed /s':>14}{'delayed / loopback':>22}")
        for name in ("noop", "noop_result"):
            fast = rates.get((name, "loopback"))
            slow = rates.get((name, "delayed"))
            if not fast or not slow:
                print(f"{name:<14}{'n/a':>14}")
                continue
            ratios = [s / f for f, s in zip(fast, slow, strict=True)]
            print(
                f"{name:<14}{statistics.median(fast):>14,.0f}{statistics.median(slow):>14,.0f}"
                f"{statistics.median(ratios):>22.2f}"
            )
    finally:
        proxy.stop()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
