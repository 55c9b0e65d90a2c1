"""The cost of ``TASKQ_WAIT_REPLICAS`` on the worker's ack path (issue 15 item 4). From the
repository root:

    .venv/bin/python bench/wait_acks.py [--tasks 10000] [--rounds 3]

Starts a private master + replica (``tests/test_wait_replicas_acks.py``'s ``Replicated``),
and drains ``--tasks`` quick tasks (results on, on the master) with one worker process
(``-P threads -c 4``), alternately without and with ``TASKQ_WAIT_REPLICAS=1`` on the worker
(the sends never wait here), ``--rounds`` times each. Prints the drain rate of each run,
the mean per-task time of each setting and their ratio, and how many ``WAIT`` commands the
master ran per task (one per ack batch, not one per task). Asserts nothing; the machine is
shared, so compare the two settings of the same run only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_wait_replicas_acks import Replicated  # noqa: E402

APP = "tests.apps.backlog_app:create_app"


def drain(pair: Replicated, tasks: int, wait: int) -> tuple[float, float]:
    """Seconds to drain ``tasks`` adds with a worker whose ``TASKQ_WAIT_REPLICAS`` is
    ``wait`` (worker start excluded: the tasks are sent once it is up); and the WAITs the
    master ran per task."""
    url = pair.master.url
    os.environ.update(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=url)
    from tests.apps.backlog_app import add, create_app

    app = create_app()
    broker = app.extensions["taskq"].broker
    env = {**os.environ, "TASKQ_WAIT_REPLICAS": str(wait), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "flask", "--app", APP, "taskq", "worker"]
    worker = subprocess.Popen(
        [*cmd, "-P", "threads", "-c", "4", "-l", "info"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if b" ready" in line:
                break
        # Keep reading its log (discarded), so that a full pipe never blocks it.
        threading.Thread(target=worker.stdout.read, daemon=True).start()
        with app.app_context():
            waits = pair.waits()
            start = time.perf_counter()
            for begin in range(0, tasks, 500):
                add.delay_many([(i, 1) for i in range(begin, min(tasks, begin + 500))])
            while broker.queue_stats(["default"])["default"].unfinished:
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            return elapsed, (pair.waits() - waits) / tasks
    finally:
        worker.kill()
        worker.wait()
        broker.close()
        pair.master.client().flushall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pair = Replicated()
    times: dict[int, list[float]] = {0: [], 1: []}
    per_task: dict[int, float] = {}
    try:
        for r in range(args.rounds):
            for wait in (0, 1):
                elapsed, per_task[wait] = drain(pair, args.tasks, wait)
                times[wait].append(elapsed)
                print(
                    f"round {r + 1}, TASKQ_WAIT_REPLICAS={wait}: "
                    f"{args.tasks / elapsed:,.0f} tasks/s, {per_task[wait]:.4f} WAIT/task"
                )
    finally:
        pair.stop()
    off, on = (sum(times[w]) / len(times[w]) / args.tasks * 1e6 for w in (0, 1))
    print(f"without WAIT on acks: {off:.1f} us/task ({1e6 / off:,.0f} tasks/s)")
    print(f"with WAIT 1 on acks:  {on:.1f} us/task ({1e6 / on:,.0f} tasks/s)")
    print(f"ratio (with / without): {on / off:.3f}; extra {on - off:+.1f} us/task")


if __name__ == "__main__":
    main()
