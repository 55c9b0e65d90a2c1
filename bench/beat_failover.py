"""How many ticks beat loses when its leader dies or freezes. Run from the repository root:

    .venv/bin/python bench/beat_failover.py [--leases 10,5,3] [--runs 5] [--stop-runs 2]

For each lease it runs two real ``flask --app bench.app:create_app taskq beat --lease L``
processes (each in its own process group) against a private redis-server, with one entry
due every second (``catch_up="one"``, the default). Once the first beat leads and has sent
three runs, the script waits a random part of a renewal period (lease / 3), then SIGKILLs
(or, in the ``stop`` runs, SIGSTOPs) the leader's process group, and watches the lease key
every 10 ms. Times are Redis's (``TIME`` and the stream entry ids of the sent messages).

takeover
    From the signal to the moment the other beat holds the lease.
gap
    Between the last run sent before the signal and the first one after it.
ticks lost
    Due times in that gap never sent: the catch-up sends one run for them, due at the
    latest of them.
sent twice
    Due times sent more than once (in the ``stop`` runs the frozen leader is resumed with
    SIGCONT after the takeover and watched for 3 s).

It prints numbers only and checks nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import app as bench_app  # noqa: E402
from bench.common import start_redis, wait_for  # noqa: E402
from flask_taskq.beat import BEAT_HEADER  # noqa: E402
from flask_taskq.keys import Keys  # noqa: E402
from flask_taskq.message import Message  # noqa: E402
from flask_taskq.serializer import JSONSerializer  # noqa: E402

KEYS = Keys(bench_app.PREFIX)
SCHEDULE = {"tick": {"task": "bench.app.noop", "schedule": 1.0}}


class BeatProcess:
    """One ``flask taskq beat`` process group, logging to a file."""

    def __init__(self, url: str, lease: float, log_path: Path) -> None:
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop()/kill())
        env = {
            **os.environ,
            "TASKQ_BROKER_URL": url,
            "PYTHONUNBUFFERED": "1",
            "BENCH_BEAT_SCHEDULE": json.dumps(SCHEDULE),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "bench.app:create_app",
                "taskq",
                "beat",
                "-l",
                "info",
                "--lease",
                str(lease),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def group_signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.group_signal(signal.SIGKILL)
        self.group_signal(signal.SIGCONT)
        self.proc.wait()
        self.log.close()

    def stop(self) -> int | str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | str = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = "no exit within 15 s"
            self.kill()
        self.log.close()
        return code


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def fires(client: redis.Redis) -> list[tuple[float, float]]:
    """(sent at, due) of every beat message, sent at = the stream entry id's milliseconds."""
    out = []
    for stream in KEYS.streams("default"):
        for entry_id, fields in client.xrange(stream):
            message = Message.from_bytes(fields[b"m"], JSONSerializer())
            sent_ms = int(entry_id.split(b"-")[0])
            out.append((sent_ms / 1000, message.headers[BEAT_HEADER]["due"]))
    return sorted(out)


def one_run(
    client: redis.Redis, url: str, lease: float, mode: str, rng: random.Random, workdir: str
) -> dict[str, float] | str:
    client.flushall()
    first = BeatProcess(url, lease, Path(workdir) / "first.log")
    second = None
    try:
        if not wait_for(lambda: client.get(KEYS.beat_lease()), 30.0, 0.05):
            return "the first beat did not take the lease within 30 s"
        leader = client.get(KEYS.beat_lease())
        second = BeatProcess(url, lease, Path(workdir) / "second.log")
        if not wait_for(lambda: len(fires(client)) >= 3, 30.0, 0.05):
            return "no three runs within 30 s"
        time.sleep(rng.uniform(0, lease / 3))  # a random point of the renewal period
        first.group_signal(signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
        signalled = redis_now(client)
        taken = wait_for(
            lambda: client.get(KEYS.beat_lease()) not in (None, leader), lease + 20, 0.01
        )
        if not taken:
            return f"no takeover within {lease + 20:g} s"
        took_over = redis_now(client)
        if not wait_for(lambda: sum(s > took_over for s, _ in fires(client)) >= 3, 30, 0.05):
            return "no three runs after the takeover within 30 s"
        if mode == "stop":
            first.group_signal(signal.SIGCONT)
            time.sleep(3.0)  # time for the resumed old leader to (wrongly) send
        sent = fires(client)
        before = [f for f in sent if f[0] <= signalled]
        after = [f for f in sent if f[0] > signalled]
        gap = after[0][0] - before[-1][0]
        lost = round(after[0][1] - before[-1][1]) - 1
        twice = sum(n - 1 for n in Counter(due for _, due in sent).values() if n > 1)
        return {"takeover": took_over - signalled, "gap": gap, "lost": lost, "twice": twice}
    finally:
        first.kill()
        if second is not None:
            second.stop()


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):5.2f}  min {min(values):5.2f}  max {max(values):5.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", default="10,5,3", help="comma-separated seconds")
    parser.add_argument("--runs", type=int, default=5, help="SIGKILL runs per lease")
    parser.add_argument("--stop-runs", type=int, default=2, help="SIGSTOP runs per lease")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    redis_proc, url = start_redis()
    client = redis.Redis.from_url(url)
    print(
        f"beat failover: 2 beats, one entry every 1 s (catch_up one), cpus={os.cpu_count()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="taskq-beat-") as workdir:
            for lease in (float(x) for x in args.leases.split(",")):
                for mode, runs in (("kill", args.runs), ("stop", args.stop_runs)):
                    results = []
                    for _ in range(runs):
                        result = one_run(client, url, lease, mode, rng, workdir)
                        if isinstance(result, str):
                            print(
                                f"lease {lease:g} s, SIG{mode.upper()}: no figure: {result}",
                                flush=True,
                            )
                        else:
                            results.append(result)
                    if not results:
                        continue
                    print(
                        f"lease {lease:4g} s, SIG{mode.upper():4} x{len(results)}: "
                        f"takeover {summary([r['takeover'] for r in results])} s | "
                        f"gap {summary([r['gap'] for r in results])} s | "
                        f"ticks lost {summary([r['lost'] for r in results])} | "
                        f"sent twice {sum(r['twice'] for r in results)}",
                        flush=True,
                    )
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
