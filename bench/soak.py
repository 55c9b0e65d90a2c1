"""flask-taskq soak under worker crashes (issue 13). Run from the repository root:

    .venv/bin/python bench/soak.py --pool prefork     (or --pool threads; --quick: small)

It starts a private redis-server on a free loopback port (never 6379) with
``--appendonly yes``, so Redis itself keeps what it acknowledged, and stops it at the end.
It starts ``--workers`` real worker processes,
``python -m flask --app bench.app:create_app taskq worker -P POOL -c CONCURRENCY``, each in
its own session (process group), and enqueues ``--tasks`` tasks ``bench.app.soak(i, ms)``
(one ``delay_many``). Each task counts its start and its run to the end in two Redis
hashes keyed by its number. Every ``--kill-every`` seconds the script SIGKILLs the whole
process group of a random worker and starts a replacement, until every task has run to
its end at least once or ``--deadline`` seconds have passed. It then stops the workers
with SIGTERM and prints numbers only, never pass/fail:

tasks, kills
    How many tasks were sent; how many worker process groups were SIGKILLed.
lost
    Tasks that never ran to their end (with the first few numbers).
duplicates
    Tasks that ran to their end more than once (at-least-once allows this after a crash:
    a task that finished but whose ack had not reached Redis when its worker was killed
    runs again). Also: tasks started more than once (killed mid-task or after).
dead-lettered, left in Redis
    Entries in the queue's dead-letter stream; messages still in the streams (waiting or
    leased) and in the delayed set at the end.
wall time
    From the first enqueue to the moment every task had run (or the deadline), and to the
    moment 99% had: the rest is the wait for the leases of killed workers to run out.
exit status
    Of each worker still running at the end, stopped with SIGTERM (0 is a clean exit).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import app as bench_app  # noqa: E402
from bench.common import start_redis, wait_for  # noqa: E402
from flask_taskq.keys import Keys  # noqa: E402

QUEUE = "default"


class Worker:
    """One ``flask taskq worker`` process group; its log goes to a file."""

    def __init__(self, number: int, pool: str, concurrency: int, url: str, logdir: str) -> None:
        self.number = number
        self.log_path = Path(logdir) / f"worker-{number}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        env = {**os.environ, "TASKQ_BROKER_URL": url, "PYTHONUNBUFFERED": "1"}
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
                pool,
                "-c",
                str(concurrency),
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready_lines = concurrency if pool == "prefork" else 1

    def ready(self) -> bool:
        return self.log_path.read_bytes().count(b" ready") >= self.ready_lines

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.close()

    def close(self) -> None:
        self.log.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--task-ms", type=float, default=20.0)
    parser.add_argument("--kill-every", type=float, default=1.5, help="seconds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="-c of each worker")
    parser.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        help="seconds from the first enqueue before giving up",
    )
    parser.add_argument("--seed", type=int, default=None, help="for the choice of victims")
    parser.add_argument(
        "--quick", action="store_true", help="a small run: 500 tasks, deadline 120 s"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.deadline = 500, 120.0
    return args


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            text=True,
            capture_output=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + (" (+ uncommitted changes)" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    keys = Keys(bench_app.PREFIX)
    with tempfile.TemporaryDirectory(prefix="taskq-soak-") as workdir:
        redis_proc, url = start_redis(workdir)
        client = redis.Redis.from_url(url)
        print(
            f"soak: pool {args.pool}, {args.workers} workers x -c {args.concurrency}, "
            f"{args.tasks} tasks of {args.task_ms:g} ms, SIGKILL every "
            f"{args.kill_every:g} s, deadline {args.deadline:g} s",
            flush=True,
        )
        print(
            f"host: {platform.node()}, cpus={os.cpu_count()}, python "
            f"{platform.python_version()}, redis {client.info()['redis_version']} "
            f"(appendonly yes), commit {commit()}, {time.strftime('%Y-%m-%d %H:%M %Z')}",
            flush=True,
        )
        workers: list[Worker] = []
        serial = 0

        def spawn() -> Worker:
            nonlocal serial
            serial += 1
            return Worker(serial, args.pool, args.concurrency, url, workdir)

        try:
            workers = [spawn() for _ in range(args.workers)]
            if not wait_for(lambda: all(w.ready() for w in workers), 60.0, 0.1):
                print("note: not every worker reported ready within 60 s", flush=True)
            os.environ["TASKQ_BROKER_URL"] = url
            app = bench_app.create_app()
            started = time.monotonic()
            with app.app_context():
                bench_app.soak.delay_many((i, args.task_ms) for i in range(args.tasks))
            enqueued = time.monotonic() - started
            kills = 0
            done = 0
            at_99: float | None = None
            next_kill = time.monotonic() + args.kill_every
            deadline = started + args.deadline
            while time.monotonic() < deadline:
                done = client.hlen(bench_app.SOAK_RUNS)
                if at_99 is None and done >= 0.99 * args.tasks:
                    at_99 = time.monotonic() - started
                if done >= args.tasks:
                    break
                if time.monotonic() >= next_kill:
                    victim = workers.pop(rng.randrange(len(workers)))
                    victim.kill_group()
                    kills += 1
                    workers.append(spawn())
                    next_kill += args.kill_every
                time.sleep(0.05)
            wall = time.monotonic() - started
            finished = done >= args.tasks
            codes = []
            for worker in workers:
                worker.proc.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    codes.append(worker.proc.wait(timeout=90))
                except subprocess.TimeoutExpired:
                    codes.append("still running after 90 s (SIGKILLed)")
                    worker.kill_group()
                worker.close()
            workers = []

            runs = {int(k): int(v) for k, v in client.hgetall(bench_app.SOAK_RUNS).items()}
            starts = {int(k): int(v) for k, v in client.hgetall(bench_app.SOAK_STARTS).items()}
            lost = sorted(set(range(args.tasks)) - set(runs))
            twice = sorted(i for i, n in runs.items() if n > 1)
            started_twice = sorted(i for i, n in starts.items() if n > 1)
            waiting = sum(client.xlen(s) for s in keys.streams(QUEUE))
            delayed = client.zcard(keys.delayed(QUEUE))
            dead = client.xlen(keys.dead(QUEUE))
        finally:
            for worker in workers:
                worker.kill_group()
            redis_proc.terminate()
            redis_proc.wait(timeout=30)

    print(f"tasks:          {args.tasks} (enqueued in {enqueued:.2f} s)")
    print(f"kills:          {kills}")
    print(f"lost:           {len(lost)}" + (f" (e.g. {lost[:10]})" if lost else ""))
    print(
        f"duplicates:     {len(twice)} ran to the end more than once "
        f"(most runs of one task: {max(runs.values(), default=0)}); "
        f"{len(started_twice)} started more than once"
    )
    print(f"dead-lettered:  {dead}")
    print(f"left in Redis:  {waiting} in the streams, {delayed} delayed")
    print(
        f"wall time:      {wall:.1f} s"
        + ("" if finished else " (deadline reached)")
        + (f"; 99% had run after {at_99:.1f} s" if at_99 is not None else "")
    )
    print(f"worker exit:    {', '.join(str(c) for c in codes)} (SIGTERM at the end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
