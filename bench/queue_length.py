"""CPU cost per task against queue length, measured where wall-clock noise cannot reach.

    .venv/bin/python bench/queue_length.py [--sizes 10000,100000,1000000] [--m 20000]

``bench/scaling.py`` times wall clock, which on a shared 2-CPU machine moves by a third
from run to run. This script asks instead how much CPU each task costs the worker process
(``time.process_time``) and the redis-server process (``/proc/<pid>/stat``) while one
in-process solo worker runs the first M of L waiting tasks, for each L, alternating the
sizes over the runs; then the same with L messages in the delayed sorted set (due in an
hour) while the worker promotes and runs M messages that are due. Flat columns mean the
queue's length does not matter. It prints two tables and checks nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import start_redis  # noqa: E402


def redis_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def add_due(app, client, task: str, count: int) -> None:
    """Put ``count`` messages of ``task`` in the delayed set, due a second ago."""
    import uuid

    from flask_taskq import Message

    state = app.extensions["taskq"]
    queue = state.default_queue
    key = state.broker.keys.delayed(queue)
    due = time.time() - 1
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        body = Message(
            id=str(uuid.uuid4()), task=task, queue=queue, eta=due, sent=time.time()
        ).to_bytes(state.serializer)
        pipe.zadd(key, {b"5" + body: due})
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--m", type=int, default=20_000, help="tasks timed per size")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    m = args.m

    import redis
    from flask import Flask

    from flask_taskq import TaskQueue
    from flask_taskq.worker import Worker

    server, url = start_redis()
    client = redis.Redis.from_url(url)
    app = Flask("queue_length")
    app.config.update(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=None)
    tq = TaskQueue(app)
    mark: dict[str, float] = {}
    seen = [0]
    target = [m]
    worker: list[Worker] = []

    @tq.task(ignore_result=True)
    def noop() -> None:
        seen[0] += 1
        if seen[0] == 1:
            mark.update(cpu0=time.process_time(), redis0=redis_cpu(server.pid))
        elif seen[0] == target[0] + 1:
            mark.update(cpu1=time.process_time(), redis1=redis_cpu(server.pid))
            worker[0].stop()

    costs: dict[tuple[str, int], list[tuple[float, float]]] = {
        (kind, s): [] for kind in ("stream", "delayed") for s in sizes
    }
    try:
        for run in range(args.runs):
            order = sizes[run % len(sizes) :] + sizes[: run % len(sizes)]
            for kind, size in [(k, s) for k in ("stream", "delayed") for s in order]:
                client.flushall()
                with app.app_context():
                    for i in range(0, size, 10_000):
                        calls = [()] * min(10_000, size - i)
                        if kind == "stream":
                            noop.delay_many(calls)
                        else:
                            noop.delay_many(calls, countdown=3600)
                    if kind == "delayed":  # M messages already due: the worker promotes them
                        add_due(app, client, noop.name, m + 1)
                seen[0] = 0
                target[0] = m if kind == "delayed" else min(m, size - 1)
                worker[:] = [Worker(app, pool="solo", install_signals=False)]
                worker[0].run()
                own = (mark["cpu1"] - mark["cpu0"]) / target[0] * 1e6
                red = (mark["redis1"] - mark["redis0"]) / target[0] * 1e6
                costs[(kind, size)].append((own, red))
                print(
                    f"run {run + 1}/{args.runs} {kind} holds {size:,}: worker {own:.1f} us, "
                    f"redis {red:.1f} us per task",
                    file=sys.stderr,
                )
    finally:
        server.terminate()
        server.wait(10)

    print(
        f"\nCPU per task (microseconds; {args.runs} runs, median (min-max)) while one solo "
        f"worker runs {m:,} no-op tasks:\n"
    )
    print(
        "| L | worker, L waiting in the stream | redis, same | worker, L in the delayed "
        "set + promoting | redis, same |"
    )
    print("|---:|---:|---:|---:|---:|")

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    for size in sizes:
        row = [f"{size:,}"]
        for kind in ("stream", "delayed"):
            row += [
                cell([c[0] for c in costs[(kind, size)]]),
                cell([c[1] for c in costs[(kind, size)]]),
            ]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
