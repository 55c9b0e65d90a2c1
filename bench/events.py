"""What task events (``TASKQ_EVENTS`` / ``worker -E``) cost. Run from the repository root:

    .venv/bin/python bench/events.py

It starts a private redis-server on a free loopback port (or uses TASKQ_BROKER_URL,
touching only ``taskqbench:*`` keys there). In one run, alternating off and on so that
machine noise falls on both alike, it measures RUNS times each:

drain, results ignored / stored (events off vs on)
    As in bench/throughput.py: N ``noop`` (or ``noop_result``) messages enqueued before a
    ``flask taskq worker -P solo`` starts; rate = N / (time of run N - time of run 1).
    "on" starts the worker with ``-E``: each task publishes task-started and
    task-succeeded. Afterwards, untimed, the stream is checked to hold 2N events (or
    the cap's worth).
enqueue (single .delay), events off vs on
    N ``noop.delay()`` calls from one thread; "on" also publishes N task-sent events.

It prints medians, min-max and the on/off ratio, and checks nothing.
"""

from __future__ import annotations

import os
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
from bench.throughput import reset  # noqa: E402
from flask_taskq import Message, events  # noqa: E402

N = 10_000
RUNS = 4
DRAIN_TIMEOUT = 120.0


def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drain(
    app, r: redis.Redis, url: str, task, with_events: bool
) -> tuple[float, float, float] | None:
    """Rate (tasks/s), the worker process's CPU seconds (start-up included, the same
    with and without events) and redis-server's CPU seconds during the drain."""
    state = app.extensions["taskq"]
    queue = state.default_queue
    bodies = [
        Message(id=str(uuid.uuid4()), task=task.name, queue=queue, sent=time.time()).to_bytes(
            state.serializer
        )
        for _ in range(N)
    ]
    state.broker.enqueue_many((queue, 5, body, None) for body in bodies)
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": url,
        "BENCH_DRAIN_N": str(N),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "-m", "flask", "--app", "bench.app:create_app", "taskq", "worker"]
    cmd += ["-P", "solo", *(["-E"] if with_events else [])]
    server_before = redis_cpu(r)
    worker_cpu = 0.0
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(
                lambda: r.exists(bench_app.LAST_KEY) or proc.poll() is not None,
                DRAIN_TIMEOUT,
                0.02,
            )
            first, last = r.mget(bench_app.FIRST_KEY, bench_app.LAST_KEY)
            if last is None:
                log.seek(0)
                print("    no figure; worker log:\n" + log.read().decode()[-2000:])
                return None
            stream = state.broker.keys.stream(queue, 5)
            wait_for(lambda: r.xlen(stream) == 0, 10.0)
            if with_events:
                key = state.broker.keys.events()
                wait_for(lambda: r.xlen(key) >= min(2 * N, 100_000) - 10, 10.0)
                print(f"    ({r.xlen(key)} events in the stream)")
            server_cpu = redis_cpu(r) - server_before
        finally:
            proc.terminate()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
            worker_cpu = usage.ru_utime + usage.ru_stime
            reset(r)
    return N / (float(last) - float(first)), worker_cpu, server_cpu


def enqueue(app, r: redis.Redis, with_events: bool) -> float:
    app.config["TASKQ_EVENTS"] = with_events
    try:
        with app.app_context():
            for _ in range(200):
                bench_app.noop.delay()
            start = time.perf_counter()
            for _ in range(N):
                bench_app.noop.delay()
            elapsed = time.perf_counter() - start
            if with_events:
                events.sender(app.extensions["taskq"]).flush()
    finally:
        app.config["TASKQ_EVENTS"] = False
        reset(r)
    return N / elapsed


def report(label: str, off: list, on: list) -> None:
    offs = [v if isinstance(v, float) else v[0] for v in off if v is not None]
    ons = [v if isinstance(v, float) else v[0] for v in on if v is not None]
    if not offs or not ons:
        print(f"{label:<28} no figure")
        return
    m_off, m_on = statistics.median(offs), statistics.median(ons)
    print(
        f"{label:<28} off {m_off:>9,.0f}/s ({min(offs):,.0f}-{max(offs):,.0f})   "
        f"on {m_on:>9,.0f}/s ({min(ons):,.0f}-{max(ons):,.0f})   on/off {m_on / m_off:.2f}"
    )
    cpu_off = [v for v in off if v is not None and not isinstance(v, float)]
    cpu_on = [v for v in on if v is not None and not isinstance(v, float)]
    if cpu_off and cpu_on:
        worker = statistics.median(v[1] for v in cpu_on) - statistics.median(v[1] for v in cpu_off)
        server = statistics.median(v[2] for v in cpu_on) - statistics.median(v[2] for v in cpu_off)
        print(
            f"{'':<28} CPU added per task by events (medians): worker "
            f"{worker / N * 1e6:+.1f} us, redis-server {server / N * 1e6:+.1f} us "
            f"(worker off: {statistics.median(v[1] for v in cpu_off) / N * 1e6:.0f} us/task "
            "incl. start-up)"
        )


def main() -> None:
    server = None
    url = os.environ.get("TASKQ_BROKER_URL")
    if not url:
        server, url = start_redis()
    os.environ["TASKQ_BROKER_URL"] = url
    try:
        app = bench_app.create_app()
        r = redis.Redis.from_url(url)
        reset(r)
        figures: dict[str, tuple[list[float | None], list[float | None]]] = {}
        for run in range(RUNS):
            print(f"run {run + 1}/{RUNS}")
            for label, task in (
                ("drain, results ignored", bench_app.noop),
                ("drain, results stored", bench_app.noop_result),
            ):
                pair = figures.setdefault(label, ([], []))
                for with_events in (run % 2 == 1, run % 2 == 0):
                    pair[int(with_events)].append(drain(app, r, url, task, with_events))
            pair = figures.setdefault("enqueue (single .delay)", ([], []))
            for with_events in (False, True):
                pair[int(with_events)].append(enqueue(app, r, with_events))
        print(f"\nN = {N:,}, {RUNS} runs each, events off and on alternating (medians, min-max)")
        for label, (off, on) in figures.items():
            report(label, off, on)
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
