"""flask-taskq throughput and latency benchmark. Run from the repository root:

    .venv/bin/python bench/throughput.py        (or: make bench)

It starts a private redis-server on a free loopback port (or uses TASKQ_BROKER_URL, touching
only ``taskqbench:*`` keys there) and runs workers as real ``flask taskq worker -P solo``
processes of ``bench.app``. Every figure is measured RUNS times; the table gives the median
and the min-max. It prints numbers only and checks nothing.

enqueue (single .delay)
    N calls of ``noop.delay()`` from one thread inside an app context, no worker running:
    N / wall time of the loop (after 200 untimed warm-up calls). One XADD round trip each.
enqueue with countdown
    The same with ``noop.apply_async(countdown=60)``: each call is one ZADD round trip to
    the queue's delayed sorted set. Untimed afterwards: the set is checked to hold every
    message, then the keys are deleted.
drain, results ignored / drain, results stored
    N messages of ``noop`` (ignore_result) or ``noop_result`` are enqueued in one pipeline
    before the worker starts; one solo worker then runs them. The tasks count their runs
    in the worker's memory and write their own ``time.time()`` to Redis at run 1 and run N
    only (see bench/app.py). Rate = N / (last - first), as in SPEC section 8. Worker
    start-up is not counted; every ack and result write is, except the final batch,
    flushed after run N. The stream is then checked to be empty (all acked), untimed.
drain, half retry once
    The same with N messages of ``maybe_retry(i)``, i = 0..N-1 (bound, ignore_result): for
    even i the first attempt raises ``self.retry(countdown=0)``, which puts the next attempt
    straight back at the end of the stream. Only successful runs count as completions
    (N of them, after N + N/2 executions); a retry attempt is not one. Rate = N / (last -
    first) as above. Untimed afterwards: stream and delayed set empty, N/2 retries logged.
start latency p50 / p99
    With a worker idle and waiting, a producer calls ``stamp.delay(time.time())`` at
    RATE/s for LATENCY_SECONDS; the task computes ``time.time() - sent`` first thing and
    pushes it to a list. Percentiles are nearest-rank over that run's samples; the
    median and min-max are then taken over the runs. It includes the enqueue call itself.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import app as bench_app  # noqa: E402
from bench.common import start_redis, wait_for  # noqa: E402
from flask_taskq import Message  # noqa: E402

N = 10_000
RUNS = 3
RATE = 100  # tasks per second for the latency figure
LATENCY_SECONDS = 5.0
DRAIN_TIMEOUT = 120.0


def reset(r: redis.Redis) -> None:
    """Delete every benchmark key (queues, results, counters)."""
    keys = list(r.scan_iter(match=f"{bench_app.PREFIX}:*", count=1000))
    for i in range(0, len(keys), 1000):
        r.unlink(*keys[i : i + 1000])


class WorkerProcess:
    """``flask taskq worker -P solo`` for bench.app; its output goes to a temporary file."""

    def __init__(self, url: str) -> None:
        env = {
            **os.environ,
            "TASKQ_BROKER_URL": url,
            "BENCH_DRAIN_N": str(N),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "bench.app:create_app",
                "taskq",
                "worker",
                "-P",
                "solo",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then wait for a graceful exit (SIGKILL only after 40 s)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode != 0:
            print(f"    note: worker exit code {self.proc.returncode}. Log:\n{self.tail()}")
        self.log.close()

    def tail(self, lines: int = 15) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])


def measure_enqueue(app, r: redis.Redis) -> float:
    with app.app_context():
        for _ in range(200):
            bench_app.noop.delay()
        start = time.perf_counter()
        for _ in range(N):
            bench_app.noop.delay()
        elapsed = time.perf_counter() - start
    reset(r)
    return N / elapsed


def measure_enqueue_countdown(app, r: redis.Redis) -> float:
    state = app.extensions["taskq"]
    delayed = state.broker.keys.delayed(state.default_queue)
    try:
        with app.app_context():
            for _ in range(200):
                bench_app.noop.apply_async(countdown=60)
            start = time.perf_counter()
            for _ in range(N):
                bench_app.noop.apply_async(countdown=60)
            elapsed = time.perf_counter() - start
        # Not timed: every message must be waiting in the delayed set, none in the stream.
        waiting, ready = r.zcard(delayed), state.broker.queue_length(state.default_queue)
        if waiting != N + 200 or ready:
            print(
                f"    note: {waiting} delayed and {ready} ready messages, expected "
                f"{N + 200} delayed and 0 ready"
            )
    finally:
        reset(r)
    return N / elapsed


def measure_drain(
    app, r: redis.Redis, url: str, task, with_index: bool = False, retries: int = 0
) -> float | None:
    """``with_index``: message i carries the argument i. ``retries``: how many retry
    attempts the worker should log (checked, untimed, after the last completion)."""
    state = app.extensions["taskq"]
    queue = state.default_queue
    bodies = [
        Message(
            id=str(uuid.uuid4()),
            task=task.name,
            queue=queue,
            args=(i,) if with_index else (),
            sent=time.time(),
        ).to_bytes(state.serializer)
        for i in range(N)
    ]
    state.broker.enqueue_many((queue, 5, body, None) for body in bodies)
    stream = state.broker.keys.stream(queue, 5)
    worker = WorkerProcess(url)
    try:
        wait_for(lambda: r.exists(bench_app.LAST_KEY) or not worker.alive(), DRAIN_TIMEOUT, 0.02)
        first, last = r.mget(bench_app.FIRST_KEY, bench_app.LAST_KEY)
        if last is None:
            why = "worker exited" if not worker.alive() else f"timed out ({DRAIN_TIMEOUT:.0f}s)"
            print(
                f"    no figure: {why}; {r.xlen(stream)} of {N} messages not acked "
                f"({state.broker.queue_length(queue)} waiting). Worker log:\n"
                f"{worker.tail()}"
            )
            return None
        # Not timed: let the last acks land so the worker stops with nothing in hand.
        if not wait_for(lambda: r.xlen(stream) == 0, 10.0):
            print(f"    note: {r.xlen(stream)} message(s) still not acked 10s after run {N}")
        if retries:
            delayed = r.zcard(state.broker.keys.delayed(queue))
            if delayed:
                print(f"    note: {delayed} message(s) left in the delayed set")
    finally:
        worker.stop()
        reset(r)
    return N / (float(last) - float(first))


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def measure_latency(app, r: redis.Redis, url: str) -> tuple[float, float] | None:
    worker = WorkerProcess(url)
    try:
        with app.app_context():
            bench_app.stamp.delay(time.time())  # warm-up, also waits for the worker to run
            if not wait_for(lambda: r.llen(bench_app.LATENCY_KEY) == 1, 30.0):
                print(f"    no figure: the warm-up task never ran. Worker log:\n{worker.tail()}")
                return None
            r.delete(bench_app.LATENCY_KEY)
            count = int(RATE * LATENCY_SECONDS)
            start = time.perf_counter()
            for i in range(count):
                pause = start + i / RATE - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                bench_app.stamp.delay(time.time())
        if not wait_for(lambda: r.llen(bench_app.LATENCY_KEY) >= count, 30.0):
            print(f"    no figure: {r.llen(bench_app.LATENCY_KEY)}/{count} tasks ran")
            return None
        samples = sorted(float(x) for x in r.lrange(bench_app.LATENCY_KEY, 0, -1))
    finally:
        worker.stop()
        reset(r)
    return percentile(samples, 50), percentile(samples, 99)


def summary(label: str, values: list[float | None], scale: float, unit: str, fmt: str) -> str:
    got = [v * scale for v in values if v is not None]
    if not got:
        return f"{label:<32}{'n/a':>10}"
    line = (
        f"{label:<32}{statistics.median(got):>10{fmt}} {unit}  "
        f"(min {min(got):{fmt}} max {max(got):{fmt}})"
    )
    return line + (f"  [{len(got)} of {len(values)} runs]" if len(got) < len(values) else "")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally blocks run
    server = None
    url = os.environ.get("TASKQ_BROKER_URL")
    try:
        if not url:
            server, url = start_redis()
        os.environ["TASKQ_BROKER_URL"] = url
        app = bench_app.create_app()
        r = bench_app.bench_redis(url)
        reset(r)
        info = r.info("server")
        print(
            f"flask-taskq bench: N={N:,} runs={RUNS} python {sys.version.split()[0]} "
            f"redis {info['redis_version']} cpus={os.cpu_count()} "
            f"broker={'private redis-server' if server else 'TASKQ_BROKER_URL'}"
        )
        results: dict[str, list] = {
            "enqueue": [],
            "enqueue_countdown": [],
            "noop": [],
            "noop_result": [],
            "maybe_retry": [],
            "latency": [],
        }
        for run in range(1, RUNS + 1):
            print(f"run {run}/{RUNS}", flush=True)
            results["enqueue"].append(measure_enqueue(app, r))
            print(f"  enqueue            {results['enqueue'][-1]:>10,.0f} /s", flush=True)
            results["enqueue_countdown"].append(measure_enqueue_countdown(app, r))
            print(f"  enqueue countdown  {results['enqueue_countdown'][-1]:>10,.0f} /s", flush=True)
            for task in (bench_app.noop, bench_app.noop_result):
                rate = measure_drain(app, r, url, task)
                results[task.__name__].append(rate)
                shown = f"{rate:>10,.0f} /s" if rate is not None else "n/a"
                print(f"  drain {task.__name__:<12} {shown}", flush=True)
            rate = measure_drain(
                app, r, url, bench_app.maybe_retry, with_index=True, retries=N // 2
            )
            results["maybe_retry"].append(rate)
            shown = f"{rate:>10,.0f} /s" if rate is not None else "n/a"
            print(f"  drain maybe_retry  {shown}", flush=True)
            lat = measure_latency(app, r, url)
            results["latency"].append(lat)
            shown = f"p50 {lat[0] * 1000:.2f} ms  p99 {lat[1] * 1000:.2f} ms" if lat else "n/a"
            print(f"  latency @{RATE}/s     {shown}", flush=True)
        lat = results["latency"]
        rows = [
            ("enqueue (single .delay)", results["enqueue"], 1, "/s", ",.0f"),
            ("enqueue with countdown", results["enqueue_countdown"], 1, "/s", ",.0f"),
            ("drain, results ignored (1 solo)", results["noop"], 1, "/s", ",.0f"),
            ("drain, results stored (1 solo)", results["noop_result"], 1, "/s", ",.0f"),
            ("drain, half retry once (1 solo)", results["maybe_retry"], 1, "/s", ",.0f"),
            (f"start latency p50 @{RATE}/s", [x and x[0] for x in lat], 1000, "ms", ",.2f"),
            (f"start latency p99 @{RATE}/s", [x and x[1] for x in lat], 1000, "ms", ",.2f"),
        ]
        print()
        for row in rows:
            print(summary(*row))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        elif url:
            reset(bench_app.bench_redis(url))


if __name__ == "__main__":
    main()
