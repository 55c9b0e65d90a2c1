"""The producer side against its ceiling, in one run (prints numbers, asserts nothing).

    python bench/ceiling.py [--n 20000] [--cpu same|other]

On a private redis-server pinned to CPU 0, with this process pinned to CPU 0 (``same``)
or CPU 1 (``other``):

- ``delay()/s`` of a no-op task against a raw loop of packed ``XADD`` commands on one
  kept redis-py connection (the ceiling), with a body of the same size;
- ``delay_many/s`` against a raw loop of pipelined ``XADD`` commands (1,000 a batch);
- the client CPU time per message of each (``time.process_time``), less sensitive than
  rates to what else runs on a shared machine;
- Redis memory per queued no-op task (``MEMORY USAGE`` of the stream and ``used_memory``
  over 100,000 tasks);
- the keys an empty queue keeps once a worker has served it and its messages (one of
  priority 9) are gone;
- the idle RSS and ``len(sys.modules)`` of a ``flask taskq worker`` process.

Run it with another checkout's interpreter (``/tmp/base/.venv/bin/python bench/ceiling.py``)
to compare versions: it imports whatever ``flask_taskq`` that interpreter has.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import start_redis, wait_for

PREFIX = "taskqceil"


def create_app():  # type: ignore[no-untyped-def]
    """The app of the measured worker (``flask --app ceiling:create_app``)."""
    from flask import Flask

    from flask_taskq import TaskQueue

    app = Flask(__name__)
    app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    app.config["TASKQ_KEY_PREFIX"] = PREFIX
    tq = TaskQueue(app)

    @tq.task(ignore_result=True, name="ceiling.noop")
    def noop() -> None:
        """Nothing."""

    app.extensions["ceiling_noop"] = noop
    return app


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu:  # type: ignore[operator]
        os.sched_setaffinity(0, {cpu})


def raw_xadd(url: str, n: int, body: bytes) -> float:
    client = redis.Redis.from_url(url)
    conn = client.connection_pool.get_connection()
    start = time.perf_counter()
    for _ in range(n):
        conn.send_packed_command(conn.pack_command("XADD", "raw:s", "*", "m", body), False)
        conn.read_response()
    elapsed = time.perf_counter() - start
    client.delete("raw:s")
    return n / elapsed


def raw_pipelined(url: str, n: int, body: bytes, batch: int = 1000) -> float:
    client = redis.Redis.from_url(url)
    conn = client.connection_pool.get_connection()
    start = time.perf_counter()
    for i in range(0, n, batch):
        k = min(batch, n - i)
        conn.send_packed_command(conn.pack_commands([("XADD", "raw:s", "*", "m", body)] * k), False)
        for _ in range(k):
            conn.read_response()
    elapsed = time.perf_counter() - start
    client.delete("raw:s")
    return n / elapsed


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024


def clear(r: redis.Redis) -> None:
    for key in r.scan_iter(f"{PREFIX}:*", count=1000):
        r.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--cpu", choices=("same", "other"), default="same")
    parser.add_argument("--memory-n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    proc, url = start_redis()
    try:
        os.sched_setaffinity(proc.pid, {0})
    except (AttributeError, OSError):
        pass
    pin(0 if opts.cpu == "same" else 1)
    os.environ["TASKQ_BROKER_URL"] = url
    r = redis.Redis.from_url(url)
    try:
        app = create_app()
        noop = app.extensions["ceiling_noop"]
        state = app.extensions["taskq"]
        with app.app_context():
            noop.delay()
            stream = state.broker.keys.stream("default", 5)
            body = r.xrange(stream)[0][1][b"m"]
            clear(r)
            n = opts.n
            single: list[tuple[float, float]] = []
            bulk: list[tuple[float, float]] = []
            # client CPU (this process: Python and its syscalls) per message, us
            cpu: dict[str, list[float]] = {"delay": [], "raw": [], "many": [], "pipelined": []}
            for _ in range(opts.rounds):  # interleaved, so that load changes hit both
                cpu0 = time.process_time()
                ceiling = raw_xadd(url, n, body)
                cpu["raw"].append((time.process_time() - cpu0) / n * 1e6)
                start, cpu0 = time.perf_counter(), time.process_time()
                for _ in range(n):
                    noop.delay()
                single.append((n / (time.perf_counter() - start), ceiling))
                cpu["delay"].append((time.process_time() - cpu0) / n * 1e6)
                clear(r)
                cpu0 = time.process_time()
                ceiling = raw_pipelined(url, n * 5, body)
                cpu["pipelined"].append((time.process_time() - cpu0) / n / 5 * 1e6)
                start, cpu0 = time.perf_counter(), time.process_time()
                noop.delay_many([()] * (n * 5))
                bulk.append((n * 5 / (time.perf_counter() - start), ceiling))
                cpu["many"].append((time.process_time() - cpu0) / n / 5 * 1e6)
                clear(r)
            print(f"body: {len(body)} bytes  cpu: {opts.cpu}  {sys.executable}")
            for label, rows in (("delay()", single), ("delay_many", bulk)):
                ratios = sorted(ours / ceiling for ours, ceiling in rows)
                best_ours = max(ours for ours, _ in rows)
                best_raw = max(ceiling for _, ceiling in rows)
                print(
                    f"  {label:<11} ours {best_ours:>9,.0f}/s  raw {best_raw:>9,.0f}/s (best of "
                    f"{len(rows)})  ratio median {ratios[len(ratios) // 2]:.2f} "
                    f"(rounds: {' '.join(f'{x:.2f}' for x in ratios)})"
                )
            low = {k: min(v) for k, v in cpu.items()}
            print(
                f"  client CPU per message (best round): delay() {low['delay']:.1f} us vs raw "
                f"{low['raw']:.1f} (ratio {low['raw'] / low['delay']:.2f}); delay_many "
                f"{low['many']:.1f} us vs pipelined {low['pipelined']:.1f} "
                f"(ratio {low['pipelined'] / low['many']:.2f})"
            )
            # memory per queued task
            clear(r)
            r.execute_command("MEMORY", "PURGE")
            before = int(r.info("memory")["used_memory"])
            m = opts.memory_n
            for _ in range(0, m, 10_000):
                noop.delay_many([()] * 10_000)
            after = int(r.info("memory")["used_memory"])
            usage = int(r.execute_command("MEMORY", "USAGE", stream, "SAMPLES", 0))
            print(
                f"  memory per task: MEMORY USAGE {usage / m:.1f} B, "
                f"used_memory {(after - before) / m:.1f} B"
            )
            clear(r)
        # empty-queue keys and idle worker
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        report = f"/tmp/ceiling-modules-{os.getpid()}"
        code = (
            "import sys, threading, time\n"
            "def report():\n"
            "    time.sleep(4)\n"
            f"    open({report!r}, 'w').write(str(len(sys.modules)))\n"
            "threading.Thread(target=report, daemon=True).start()\n"
            "sys.argv = ['flask', '--app', 'ceiling:create_app', 'taskq', 'worker',"
            " '--concurrency', '2']\n"
            "from flask.cli import main\n"
            "main()\n"
        )
        worker = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",  # not a checkout: the interpreter's own flask_taskq
        )
        try:
            wait_for(lambda: os.path.exists(report), 30)
            time.sleep(0.5)
            with open(report) as f:
                modules = f.read()
            with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as f:
                children = f.read().split()
            sizes = ", ".join(f"{rss_mib(int(pid)):.1f}" for pid in children)
            print(
                f"  idle worker (prefork -c 2): VmRSS {rss_mib(worker.pid):.1f} MiB, "
                f"{modules} modules; children {sizes} MiB"
            )
            with app.app_context():
                noop.apply_async(priority=9)
                noop.delay()
                stream = state.broker.keys.stream("default", 9)
                wait_for(
                    lambda: (
                        state.broker.queue_stats(["default"])["default"].ready == 0
                        and r.xlen(state.broker.keys.stream("default", 5)) == 0
                    ),
                    20,
                )
                time.sleep(0.5)
            keys = sorted(k.decode() for k in r.scan_iter(f"{PREFIX}:{{default}}*"))
            print(f"  empty queue keys: {len(keys)} ({', '.join(keys)})")
        finally:
            worker.terminate()
            worker.wait(10)
            if os.path.exists(report):
                os.unlink(report)
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
