"""What a start-latency run at a low rate pays for code that waits between tasks (issue
19). From the repository root:

    .venv/bin/python bench/cold_path.py [--gap-ms 10] [--samples 300] [--cpu 1]

At 100 tasks/s a worker and a producer sleep about 10 ms between tasks, and what ran
before has left the CPU's caches by the time the next task arrives. This script times
steps of the start-latency path in one process pinned to one CPU, each alone, twice:
warm (run back to back) and cold (after sleeping ``--gap-ms``), and prints the median
of each and their ratio. The steps are the raw consumer's work (``json.loads`` of a
body, what bench/peers/ceiling.py's latency consumer does), our worker's decode of the
same message (``Message.from_bytes``), and the push and pop of a Flask application
context (every task runs in one). Needs no Redis; prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402

from flask_taskq.message import Message  # noqa: E402
from flask_taskq.serializer import get_serializer  # noqa: E402


def steps() -> dict[str, Callable[[], object]]:
    serializer = get_serializer("json")
    body = Message(
        id="8d7f3c1e-2b4a-4f6e-9a0b-1c2d3e4f5a6b",
        task="bench.peers.taskq_app.stamp",
        args=(time.time(),),
        sent=time.time(),
    ).to_bytes(serializer)
    app = Flask("cold_path")

    def app_context() -> None:
        with app.app_context():
            pass

    return {
        "json.loads of the body (the raw consumer)": lambda: json.loads(body),
        "Message.from_bytes (our decode)": lambda: Message.from_bytes(body, serializer),
        "Flask app context push + pop": app_context,
    }


def timed(step: Callable[[], object], gap: float, samples: int) -> float:
    """Median seconds of ``step``, each call after sleeping ``gap`` (0: back to back)."""
    clock, out = time.perf_counter, []
    for _ in range(samples):
        if gap:
            time.sleep(gap)
        start = clock()
        step()
        out.append(clock() - start)
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gap-ms", type=float, default=10.0, help="idle time before a cold call")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    table = steps()
    for step in table.values():  # compiled, specialised, imported: only the caches go cold
        for _ in range(1000):
            step()
    print(f"gap {args.gap_ms:g} ms, {args.samples} samples, median; cold / warm")
    print(f"{'step':<44} {'warm µs':>8} {'cold µs':>8} {'ratio':>6}")
    for name, step in table.items():
        warm = timed(step, 0.0, args.samples)
        cold = timed(step, args.gap_ms / 1000, args.samples)
        print(f"{name:<44} {warm * 1e6:8.1f} {cold * 1e6:8.1f} {cold / warm:6.1f}")


if __name__ == "__main__":
    main()
