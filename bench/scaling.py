"""How flask-taskq scales (issue #7, part 3). From the repository root:

    .venv/bin/python bench/scaling.py [--runs 3] [--quick] [--no-write]   (make bench-scaling)

Ours only, on one private redis-server (as bench/compare.py), with the same driver and the
same counting (bench/peers/driver.py, bench/peers/counting.py). Three curves:

workers
    Drain of N (20,000) tasks by 1, 2 and 4 solo worker processes (``flask taskq worker
    -P solo``, started together; see the start gate in counting.py): tasks/s.
queue length
    With L = 10k, 100k, 1M tasks already waiting in the stream (pre-filled untimed through
    the broker's pipelined ``enqueue_many`` with our real message format): the cost per
    task of M (10,000) single ``noop.delay()`` calls, and of one solo worker running the
    first M of the waiting tasks (M / (time of run M - time of run 1)).
delayed-set size
    With D = 10k, 100k, 1M messages in the queue's delayed sorted set, due in an hour: the
    cost per task of M ``apply_async(countdown=60)`` calls (ZADD), and of promoting M due
    messages (put in the same set with an ETA in the past) and running them with one solo
    worker (the worker's promote step moves due messages to the stream in batches).

All tasks are ``noop_ignored`` (``ignore_result=True``), as before issue 19 made the
default options (results stored) the headline of bench/compare.py: these curves are about
the queue, and stay comparable with earlier runs.

Costs are microseconds per task (1e6 / rate); flat means the queue's size does not matter.
--quick: N = 5,000, M = 2,000, sizes 1k/10k/100k, 1 run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import start_redis as start_server  # noqa: E402
from bench.compare import DOC, DOC_TEMPLATE, hardware, log, replace_section, run_driver  # noqa: E402

CHART = ROOT / "docs" / "_static" / "scaling.png"
BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"


def prefill(mod, count: int, eta: float | None, chunk: int = 20_000) -> float:
    """Put ``count`` noop messages straight into the broker; return seconds taken."""
    from flask_taskq import Message

    start = time.perf_counter()
    with mod.context():
        state = mod._app.extensions["taskq"]
        queue, name = state.default_queue, mod.noop_ignored.name
        for i in range(0, count, chunk):
            now = time.time()
            bodies = [
                Message(id=str(uuid.uuid4()), task=name, queue=queue, eta=eta, sent=now).to_bytes(
                    state.serializer
                )
                for _ in range(min(chunk, count - i))
            ]
            if eta is None:
                state.broker.enqueue_many((queue, 5, body, None) for body in bodies)
            else:  # straight into the delayed set, also when already due (to be promoted)
                state.broker.client.zadd(
                    state.broker.keys.delayed(queue), {b"5" + body: eta for body in bodies}
                )
    return time.perf_counter() - start


def time_calls(mod, m: int, countdown: float | None) -> float:
    """Microseconds per ``noop_ignored.delay()`` (or ``apply_async(countdown=...)``) call."""
    task = mod.noop_ignored
    with mod.context():
        send = task.delay if countdown is None else lambda: task.apply_async(countdown=countdown)
        for _ in range(200):
            send()
        start = time.perf_counter()
        for _ in range(m):
            send()
        return (time.perf_counter() - start) / m * 1e6


def drain_cost(url: str, m: int) -> float | None:
    """Microseconds per task for one solo worker running the first M waiting tasks."""
    out = run_driver(
        Path(sys.executable),
        "ours",
        "drain",
        ["--n", "0", "--target", str(m), "--no-flush", "--task", "ignored", "--timeout", "300"],
        url,
        420,
    )
    if out.get("value") is None:
        log(f"    no figure: {out.get('error')}\n    {out.get('log', '')[-800:]}")
        return None
    return 1e6 / out["value"]


def median_cell(values: list[float | None], fmt: str) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "no figure"
    text = f"{statistics.median(got):{fmt}}"
    if len(got) > 1:
        text += f" ({min(got):{fmt}}-{max(got):{fmt}})"
    return text


def med(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="default 3 (--quick 1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--procs", default="1,2,4")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    n, m = (5_000, 2_000) if args.quick else (20_000, 10_000)
    sizes = [1_000, 10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    procs = [int(p) for p in args.procs.split(",")]

    server, url = start_server()
    os.environ["BENCH_REDIS_URL"] = url
    import redis

    from bench.peers import taskq_app as mod

    r = redis.Redis.from_url(url)
    workers: dict[int, list] = {p: [] for p in procs}
    enqueue: dict[int, list] = {s: [] for s in sizes}
    drain: dict[int, list] = {s: [] for s in sizes}
    countdown: dict[int, list] = {s: [] for s in sizes}
    promote: dict[int, list] = {s: [] for s in sizes}
    try:
        log(
            f"scaling: N={n:,} M={m:,} sizes={sizes} procs={procs} runs={runs} "
            f"cpus={os.cpu_count()}"
        )
        for run in range(1, runs + 1):
            rotate = (run - 1) % len(procs)
            for p in procs[rotate:] + procs[:rotate]:
                out = run_driver(
                    Path(sys.executable),
                    "ours",
                    "drain",
                    ["--n", str(n), "--procs", str(p), "--task", "ignored"],
                    url,
                    600,
                )
                workers[p].append(out.get("value"))
                log(
                    f"run {run}/{runs} workers={p}: "
                    + (
                        f"{out['value']:,.0f}/s {out.get('per_proc')}"
                        if out.get("value")
                        else f"no figure ({out.get('error')})"
                    )
                )
            for size in sizes:
                r.flushdb()
                took = prefill(mod, size, None)
                enqueue[size].append(time_calls(mod, m, None))
                drain[size].append(drain_cost(url, m))  # the driver flushes afterwards
                log(
                    f"run {run}/{runs} waiting={size:,} (filled in {took:.1f}s): enqueue "
                    f"{enqueue[size][-1]:.1f} us/task, drain "
                    + (f"{drain[size][-1]:.1f} us/task" if drain[size][-1] else "-")
                )
                r.flushdb()
                took = prefill(mod, size, time.time() + 3600)
                countdown[size].append(time_calls(mod, m, 60))
                prefill(mod, m, time.time() - 1)
                promote[size].append(drain_cost(url, m))
                log(
                    f"run {run}/{runs} delayed={size:,} (filled in {took:.1f}s): countdown "
                    f"enqueue {countdown[size][-1]:.1f} us/task, promote+run "
                    + (f"{promote[size][-1]:.1f} us/task" if promote[size][-1] else "-")
                )
        redis_version = r.info("server")["redis_version"]
    finally:
        server.terminate()
        server.wait(10)

    base = med(workers[procs[0]])
    lines = [
        f"Generated by `bench/scaling.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{runs} run(s), median (min-max). Machine: {hardware()['cpus']} CPUs "
        f"({hardware()['cpu']}), Redis {redis_version}.",
        "",
        f"Drain of {n:,} tasks by P solo worker processes:",
        "",
        "| worker processes | tasks/s | vs 1 process |",
        "|---:|---:|---:|",
    ]
    for p in procs:
        ratio = med(workers[p]) / base if base and med(workers[p]) else None
        lines.append(
            f"| {p} | {median_cell(workers[p], ',.0f')} | "
            + (f"{ratio:.2f}x |" if ratio else "- |")
        )
    lines += [
        "",
        f"Cost per task (microseconds, lower is better) of {m:,} single calls and "
        f"of running {m:,} tasks with one solo worker, against how much is already "
        "waiting:",
        "",
        "| already waiting | `delay()` | drain | in delayed set | "
        "`apply_async(countdown=60)` | promote + run |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        lines.append(
            f"| {s:,} in stream | {median_cell(enqueue[s], ',.1f')} | "
            f"{median_cell(drain[s], ',.1f')} | {s:,} | "
            f"{median_cell(countdown[s], ',.1f')} | {median_cell(promote[s], ',.1f')} |"
        )
    body = "\n".join(lines) + "\n"
    print()
    print(body)
    if args.no_write:
        return
    replace_section(DOC, BEGIN, END, body, DOC_TEMPLATE)
    note = draw(
        procs,
        workers,
        sizes,
        {
            "delay()": enqueue,
            "drain": drain,
            "apply_async(countdown=60)": countdown,
            "promote + run": promote,
        },
    )
    log(
        f"wrote {DOC.relative_to(ROOT)}"
        + (f"; {note}" if note else f" and {CHART.relative_to(ROOT)}")
    )


def draw(procs, workers, sizes, costs) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no chart written"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ys = [med(workers[p]) or 0 for p in procs]
    left.plot(procs, ys, "o-", color="#d62728", label="measured")
    if ys and ys[0]:
        left.plot(procs, [ys[0] * p for p in procs], "--", color="grey", label="linear")
    left.set_xticks(procs)
    left.set_xlabel(f"worker processes (solo pool), {os.cpu_count()} CPUs")
    left.set_ylabel("drain, tasks/s")
    left.set_title("Throughput vs worker processes", fontsize=10)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for label, series in costs.items():
        right.plot(sizes, [med(series[s]) for s in sizes], "o-", label=label)
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("tasks already waiting (stream) / delayed-set size")
    right.set_ylabel("microseconds per task")
    right.set_title("Cost per task vs queue size (flat is good)", fontsize=10)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    CHART.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(CHART, dpi=90)
    plt.close(fig)
    return ""


if __name__ == "__main__":
    main()
