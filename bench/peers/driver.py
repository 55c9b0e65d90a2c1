"""One measurement of one system; prints one JSON line on stdout (progress on stderr).

    <python> -m bench.peers.driver SYSTEM MEASURE [--n N] [--procs P] [--rate R] ...

Run by bench/compare.py and bench/scaling.py with the interpreter the system is installed
in (ours: .venv, peers: bench/.venv-peers) and BENCH_REDIS_URL set to a private Redis,
which it flushes before and after. Needs only the stdlib, ``redis`` and the system.

MEASURE is one of
  enqueue   N single calls (``delay`` / ``enqueue`` / ``send`` / call) after 200 warm-up
            calls, no worker running: N / wall time of the loop.
  bulk      The system's bulk API for N tasks, timed as one call (after 200 untimed single
            calls); ``null`` with a reason when it has none.
  drain     N tasks enqueued (bulk API if any, else single calls; untimed), then P worker
            processes started: N / (last completion - first completion), counted by
            bench.peers.counting. ``--task`` picks the task: ``default`` (``noop``, the
            system's default options), ``ignored`` (``noop_ignored``, no result kept) or
            ``stored`` (``noop_result``, its ``None`` result stored). Also the workers'
            total RSS after the drain.
  latency   One idle worker; a producer sends ``stamp(time.time())`` at RATE/s for SECONDS;
            p50/p99 nearest-rank of the start latencies.
  memory    One worker started on an empty Redis: its RSS once settled, before any task
            (the value). Then, after one warm-up ``noop_result`` ran (queue structures,
            scripts), with no worker: Redis memory per queued task over N ``noop_result``
            sent, and per stored result once one worker ran them all and stopped.

Placement (``--producer-cpu``, ``--side-cpu``, ``--worker-cpus``): this process sends from
the producer CPU while no worker runs, moves to the side CPU before it starts workers (so
that it never shares a CPU with one), and worker process i runs on
``worker_cpus[i % len]``, with all its threads and children.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import pinned, wait_for  # noqa: E402

SYSTEMS = ("ours", "celery", "rq", "dramatiq", "huey")
TASKS = {"default": "noop", "ignored": "noop_ignored", "stored": "noop_result"}
MODULES = {
    "ours": "bench.peers.taskq_app",
    "celery": "bench.peers.celery_app",
    "rq": "bench.peers.rq_app",
    "dramatiq": "bench.peers.dramatiq_app",
    "huey": "bench.peers.huey_app",
}


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def worker_argv(system: str, index: int, url: str) -> list[str]:
    """The command line of worker process ``index`` (one process, as documented)."""
    bindir = Path(sys.executable).parent
    if system == "ours":
        return [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "bench.peers.taskq_app:create_app",
            "taskq",
            "worker",
            "-P",
            "solo",
        ]
    if system == "celery":
        return [
            str(bindir / "celery"),
            "-A",
            "bench.peers.celery_app",
            "worker",
            "-P",
            "solo",
            "-c",
            "1",
            "-l",
            "WARNING",
            "-n",
            f"bench{index}@%h",
        ]
    if system == "rq":
        return [
            str(bindir / "rq"),
            "worker",
            "-w",
            "rq.worker.SimpleWorker",
            "--url",
            url,
            "--logging_level",
            "WARNING",
            "default",
        ]
    if system == "dramatiq":
        return [str(bindir / "dramatiq"), "bench.peers.dramatiq_app", "-p", "1"]
    if system == "huey":
        return [
            str(bindir / "huey_consumer"),
            "bench.peers.huey_app.huey",
            "-w",
            "1",
            "-k",
            "thread",
            "-q",
        ]
    raise ValueError(system)


def cpus_arg(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def place(cpu: int | None) -> None:
    """Move this process to ``cpu`` (no-op without one)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


class Workers:
    """P worker processes, each in its own session; output to a log file. Worker ``i``
    runs on ``cpus[i % len(cpus)]`` when ``cpus`` is given."""

    def __init__(
        self, system: str, procs: int, url: str, logdir: Path, cpus: list[int] | None = None
    ) -> None:
        self.procs, self.logs = [], []
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        for i in range(procs):
            path = logdir / f"worker-{system}-{os.getpid()}-{i}.log"
            handle = path.open("wb")
            self.logs.append((path, handle))
            self.procs.append(
                subprocess.Popen(
                    worker_argv(system, i, url),
                    cwd=ROOT,
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=pinned([cpus[i % len(cpus)]] if cpus else None),
                )
            )

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def rss_kib(self) -> int:
        """VmRSS of every worker process and all their descendants (forking pools)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        total, todo = 0, [p.pid for p in self.procs]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def tail(self, lines: int = 12) -> str:
        out = []
        for path, handle in self.logs:
            handle.flush()
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"[{path.name}] " + " | ".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for path, handle in self.logs:
            handle.close()
            path.unlink(missing_ok=True)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def measure_enqueue(mod, n: int) -> dict:
    with mod.context():
        for _ in range(200):
            mod.send_one(mod.noop)
        start = time.perf_counter()
        for _ in range(n):
            mod.send_one(mod.noop)
        elapsed = time.perf_counter() - start
    return {"value": n / elapsed, "unit": "/s"}


def measure_bulk(mod, n: int) -> dict:
    if mod.send_bulk is None:
        return {"value": None, "na": "no bulk API"}
    with mod.context():
        for _ in range(200):
            mod.send_one(mod.noop)
        start = time.perf_counter()
        how = mod.send_bulk(mod.noop, n)
        elapsed = time.perf_counter() - start
    return {"value": n / elapsed, "unit": "/s", "how": how}


def fill(mod, task, n: int) -> None:
    with mod.context():
        if mod.send_bulk is not None:
            for i in range(0, n, 10_000):
                mod.send_bulk(task, min(10_000, n - i))
        else:
            for _ in range(n):
                mod.send_one(task)


def used_memory(r) -> int:
    """Redis memory in use, without the clients' buffers (which come and go with the
    producer's pipelines, not with what is stored)."""
    info = r.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


def settled_rss(workers: Workers, longest: float = 30.0) -> float | None:
    """RSS (KiB) of the workers once it stayed within 1% for 2 s, at least 3 s after the
    start; None if a worker exited."""
    start, samples = time.monotonic(), []
    while time.monotonic() - start < longest:
        if not workers.alive():
            return None
        samples = [*samples[-9:], workers.rss_kib()]
        if (
            time.monotonic() - start >= 3.0
            and len(samples) == 10
            and max(samples) - min(samples) <= 0.01 * max(samples)
        ):
            break
        time.sleep(0.2)
    return samples[-1] if samples else None


def measure_memory(system: str, mod, r, url: str, args) -> dict:
    from bench.peers import counting

    task = mod.noop_result

    def ran(total: int, workers: Workers):
        def check():
            if not workers.alive():
                return "exited"
            return sum(row[0] for row in counting.read(r)) >= total

        return wait_for(check, args.timeout, 0.02)

    place(args.side_cpu)
    workers = Workers(system, 1, url, args.logdir, args.worker_cpus)
    try:
        idle = settled_rss(workers)
        if idle is None:
            return {"value": None, "error": "the worker exited", "log": workers.tail()}
        with mod.context():
            mod.send_one(task)
        if ran(1, workers) is not True:
            return {"value": None, "error": "the warm-up task never ran", "log": workers.tail()}
    finally:
        workers.stop()
    time.sleep(0.3)
    before = used_memory(r)
    place(args.producer_cpu)
    fill(mod, task, args.n)
    time.sleep(0.3)
    queued = used_memory(r)
    place(args.side_cpu)
    workers = Workers(system, 1, url, args.logdir, args.worker_cpus)
    try:
        if ran(args.n + 1, workers) is not True:
            got = sum(row[0] for row in counting.read(r))
            return {"value": None, "error": f"{got} of {args.n + 1} ran", "log": workers.tail()}
    finally:
        workers.stop()
    time.sleep(0.3)
    stored = used_memory(r)
    return {
        "value": idle / 1024,
        "unit": "MiB",
        "queued_bytes": (queued - before) / args.n,
        "result_bytes": (stored - before) / args.n,
    }


def measure_drain(system: str, mod, r, url: str, args) -> dict:
    from bench.peers import counting

    task = getattr(mod, TASKS[args.task])
    fill(mod, task, args.n)
    place(args.side_cpu)
    workers = Workers(system, args.procs, url, args.logdir, args.worker_cpus)
    try:

        def done():
            if not workers.alive():
                return "exited"
            rows = counting.read(r)
            return rows if sum(row[0] for row in rows) >= args.target_total else None

        rows = wait_for(done, args.timeout, 0.02)
        if rows is None or rows == "exited":
            got = sum(row[0] for row in counting.read(r))
            why = "a worker exited" if rows == "exited" else f"timed out ({args.timeout:.0f}s)"
            return {
                "value": None,
                "error": f"{why}; {got} of {args.target_total} ran",
                "log": workers.tail(),
            }
        rss = workers.rss_kib()
        first = min(row[1] for row in rows if row[0])
        if args.target:  # scaling.py: one process, stop after run TARGET
            last, count = rows[0][3], args.target
        else:
            last, count = max(row[2] for row in rows), args.n
        return {
            "value": count / (last - first),
            "unit": "/s",
            "rss_mib": rss / 1024,
            "per_proc": [row[0] for row in rows],
        }
    finally:
        workers.stop()


def measure_latency(system: str, mod, r, url: str, args) -> dict:
    from bench.peers import counting

    place(args.side_cpu)
    workers = Workers(system, 1, url, args.logdir, args.worker_cpus)
    try:
        with mod.context():
            mod.send_one(mod.stamp, time.time())  # warm-up; also waits for the worker
            if (
                not wait_for(lambda: r.llen(counting.LATENCY_KEY) >= 1 or not workers.alive(), 60.0)
                or not workers.alive()
            ):
                return {"value": None, "error": "the warm-up task never ran", "log": workers.tail()}
            time.sleep(0.2)
            r.delete(counting.LATENCY_KEY)
            count = int(args.rate * args.seconds)
            start = time.perf_counter()
            for i in range(count):
                pause = start + i / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                mod.send_one(mod.stamp, time.time())
            sent_rate = count / (time.perf_counter() - start)
        if not wait_for(lambda: r.llen(counting.LATENCY_KEY) >= count, args.timeout, 0.02):
            return {
                "value": None,
                "error": f"{r.llen(counting.LATENCY_KEY)}/{count} ran within {args.timeout:.0f}s",
                "log": workers.tail(),
            }
        samples = sorted(float(x) for x in r.lrange(counting.LATENCY_KEY, 0, -1))
        return {
            "value": percentile(samples, 50),
            "p99": percentile(samples, 99),
            "unit": "s",
            "sent_rate": sent_rate,
        }
    finally:
        workers.stop()


def versions(system: str) -> str:
    from importlib.metadata import version

    dist = {"ours": "flask-taskq"}.get(system, system)
    try:
        return version(dist)
    except Exception:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument(
        "measure", choices=("enqueue", "bulk", "drain", "latency", "memory", "version")
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--task", choices=tuple(TASKS), default="default")
    parser.add_argument("--results", action="store_true", help="the same as --task stored")
    parser.add_argument("--producer-cpu", type=int, help="CPU of this process while sending")
    parser.add_argument("--side-cpu", type=int, help="CPU of this process while workers run")
    parser.add_argument("--worker-cpus", type=cpus_arg, help="CPUs of the workers, e.g. 1,0")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument(
        "--target",
        type=int,
        default=0,
        help="drain: stop after run TARGET (one process; scaling.py)",
    )
    parser.add_argument(
        "--no-flush",
        action="store_true",
        help="drain: keep what is in Redis (scaling.py pre-fills)",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--logdir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    args.target_total = args.target or args.n
    if args.results:
        args.task = "stored"
    if args.measure == "memory":
        args.task = "stored"

    out = {"system": args.system, "measure": args.measure}
    if args.measure == "version":  # also checks that the adapter imports
        out["version"] = versions(args.system)
        try:
            importlib.import_module(MODULES[args.system])
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out), flush=True)
        return
    url = os.environ["BENCH_REDIS_URL"]
    os.environ["BENCH_PROCS"] = str(args.procs)
    os.environ["BENCH_TARGET"] = str(args.target)
    os.environ["BENCH_TASK"] = args.task
    place(args.producer_cpu)
    import redis

    r = redis.Redis.from_url(url)
    if not args.no_flush:
        r.flushdb()
    try:
        mod = importlib.import_module(MODULES[args.system])
        if not hasattr(mod, "context"):
            mod.context = contextlib.nullcontext
        if args.measure == "enqueue":
            out.update(measure_enqueue(mod, args.n))
        elif args.measure == "bulk":
            out.update(measure_bulk(mod, args.n))
        elif args.measure == "drain":
            out.update(measure_drain(args.system, mod, r, url, args))
        elif args.measure == "memory":
            out.update(measure_memory(args.system, mod, r, url, args))
        else:
            out.update(measure_latency(args.system, mod, r, url, args))
    except Exception as exc:  # fail soft: the orchestrator prints the reason
        out.update(value=None, error=f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            r.flushdb()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
