"""flask-taskq workflow benchmark. Run from the repository root:

    .venv/bin/python bench/workflows.py

It starts a private redis-server on a free loopback port (or uses TASKQ_BROKER_URL,
touching only ``taskqbench:*`` keys there; helpers from ``bench/common.py`` and
``bench/throughput.py``) and one
real ``flask taskq worker -P solo`` process of ``bench.app``, started before the first
figure and kept for all of them. Every figure is measured RUNS times; the table gives the
median and the min-max. It prints numbers only and checks nothing.

chord of 1,000
    ``chord(wf_noop.s() x CHORD_N, wf_count.s())``: time from the ``apply_async`` call
    (recording the graph and sending the 1,000 members included) until the callback's
    result is ready (``get()`` wakes on it).
chain link overhead
    A chain of CHAIN_N ``wf_noop.s()`` against CHAIN_N independent ``wf_noop.delay()``
    calls, each timed from the first send until the last result is ready; the figure is
    (chain - independent) / CHAIN_N: what one link adds (the worker sends the next step
    after each task instead of the caller sending all of them up front).
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import app as bench_app  # noqa: E402
from bench.common import start_redis  # noqa: E402
from bench.throughput import WorkerProcess, reset  # noqa: E402
from flask_taskq import chain, chord  # noqa: E402

RUNS = 3
CHORD_N = 1000
CHAIN_N = 200
TIMEOUT = 120.0


def measure_chord(app) -> float:
    with app.app_context():
        start = time.perf_counter()
        res = chord(
            (bench_app.wf_noop.s() for _ in range(CHORD_N)), bench_app.wf_count.s()
        ).apply_async()
        value = res.get(timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
    if value != CHORD_N:
        print(f"    note: the callback got {value} values, not {CHORD_N}")
    return elapsed


def measure_chain(app) -> tuple[float, float]:
    """Seconds for a chain of CHAIN_N and for CHAIN_N independent no-ops."""
    with app.app_context():
        start = time.perf_counter()
        res = chain(bench_app.wf_noop.s() for _ in range(CHAIN_N)).apply_async()
        res.get(timeout=TIMEOUT)
        chained = time.perf_counter() - start
        start = time.perf_counter()
        results = [bench_app.wf_noop.delay() for _ in range(CHAIN_N)]
        for result in results:
            result.get(timeout=TIMEOUT)
        independent = time.perf_counter() - start
    return chained, independent


def spread(label: str, values: list[float], scale: float, unit: str, fmt: str) -> str:
    got = [v * scale for v in values]
    return (
        f"{label:<36}{statistics.median(got):>10{fmt}} {unit}  "
        f"(min {min(got):{fmt}} max {max(got):{fmt}})"
    )


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally blocks run
    server = worker = None
    url = os.environ.get("TASKQ_BROKER_URL")
    try:
        if not url:
            server, url = start_redis()
        os.environ["TASKQ_BROKER_URL"] = url
        app = bench_app.create_app()
        r = bench_app.bench_redis(url)
        reset(r)
        worker = WorkerProcess(url)
        with app.app_context():  # the worker is up once it ran a task
            bench_app.wf_noop.delay().get(timeout=60)
        info = r.info("server")
        print(
            f"flask-taskq workflow bench: runs={RUNS} python {sys.version.split()[0]} "
            f"redis {info['redis_version']} cpus={os.cpu_count()} worker=1 solo "
            f"broker={'private redis-server' if server else 'TASKQ_BROKER_URL'}"
        )
        chords: list[float] = []
        chains: list[float] = []
        singles: list[float] = []
        for run in range(1, RUNS + 1):
            chords.append(measure_chord(app))
            chained, independent = measure_chain(app)
            chains.append(chained)
            singles.append(independent)
            print(
                f"run {run}/{RUNS}: chord {chords[-1]:.3f} s, chain {chained:.3f} s, "
                f"independent {independent:.3f} s",
                flush=True,
            )
            reset(r)
        per_link = [(c - s) / CHAIN_N for c, s in zip(chains, singles, strict=True)]
        print()
        print(spread(f"chord of {CHORD_N:,} no-ops, to callback", chords, 1, "s", ",.3f"))
        print(spread(f"chain of {CHAIN_N} no-ops", chains, 1000, "ms", ",.1f"))
        print(spread(f"{CHAIN_N} independent no-ops", singles, 1000, "ms", ",.1f"))
        print(spread("overhead per chain link", per_link, 1e6, "µs", ",.0f"))
    finally:
        if worker is not None:
            worker.stop()
        if server is not None:
            server.terminate()
            server.wait(10)
        elif url:
            reset(bench_app.bench_redis(url))


if __name__ == "__main__":
    main()
