"""flask-taskq side by side with Celery, RQ, Dramatiq and Huey (issues #7, #16, #19). From
the repo root:

    .venv/bin/python bench/compare.py [--runs 3] [--n 10000] [--only ours,celery]
                                      [--quick] [--no-write] [--no-rabbitmq] [--no-pin]
                                                                    (or: make bench)

It installs the peers from the pinned bench/requirements-peers.txt into bench/.venv-peers
(created on demand, re-created when that file changes), starts one private redis-server on a
free loopback port with persistence off, and then only spawns processes: every figure is one
run of ``bench.peers.driver`` (see there and bench/README.md for what each counts) in the
system's own interpreter, or of ``bench.peers.ceiling`` (raw redis-py loops, the ceiling
column), which prints one JSON line. Processes are pinned to CPUs (the placement is printed).
flask-taskq and Celery are also measured with RabbitMQ as the broker (a private vhost per
measurement), when RabbitMQ runs on 127.0.0.1:5672. Each figure is taken RUNS times (the
memory figures once: they do not vary with load); in every run the systems take turns for
each figure, in an order that rotates from run to run, so drift on the machine hits all
alike. The tables give the median and min-max, ours / best peer and ours / ceiling. Unless
--no-write, it also writes the tables into docs/performance.md (between markers) and a
chart to docs/_static/performance.png. Progress goes to stderr; a system that cannot be
installed or measured shows "no figure (reason)" and the rest still runs. It asserts
nothing.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import vhost  # noqa: E402
from bench.common import start_redis  # noqa: E402

BENCH = ROOT / "bench"
REQUIREMENTS = BENCH / "requirements-peers.txt"
PEERS_VENV = BENCH / ".venv-peers"
DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "_static" / "performance.png"
SYSTEMS = ("ours", "celery", "rq", "dramatiq", "huey")
PEERS = SYSTEMS[1:]
#: The systems also measured with RabbitMQ as the broker; column "<system>@rabbitmq".
AMQP_SYSTEMS = ("ours", "celery")
CEILING = "ceiling"
#: flask-taskq from another checkout (--baseline), for before/after in the same run.
BASELINE = "baseline"
#: What each system's default task options do with a no-op's result (the headline rows).
DEFAULTS = {
    "ours": "result stored (TASKQ_TASK_IGNORE_RESULT is False; the backend defaults to the "
    "broker's Redis, or the store on RabbitMQ; kept TASKQ_RESULT_EXPIRES = 1 day)",
    "celery": "result stored (task_ignore_result is False) once a result backend is set, as "
    "here (the private Redis); Celery's own default is no backend, which stores nothing",
    "rq": "job and result kept for result_ttl = 500 s",
    "dramatiq": "nothing stored (an actor's store_results is False; the Results middleware, "
    "added here for the results-stored row, is not in Dramatiq's default stack)",
    "huey": "nothing stored for a no-op (RedisHuey keeps results, but store_none is False, "
    "so a None result is not written)",
}
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --- environment -------------------------------------------------------------------------


def ensure_peers_venv() -> tuple[Path | None, str]:
    """The peers' interpreter, or None and why not."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements-sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python, ""
    log(
        f"peers: installing {REQUIREMENTS.relative_to(ROOT)} into "
        f"{PEERS_VENV.relative_to(ROOT)} ..."
    )
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        if not python.exists():
            subprocess.run(
                [base, "-m", "venv", str(PEERS_VENV)], check=True, capture_output=True, timeout=300
            )
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        return None, "peers venv: " + (" | ".join(tail) or f"exit {exc.returncode}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"peers venv: {exc}"
    stamp.write_text(digest + "\n")
    return python, ""


def hardware() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


# --- baseline ------------------------------------------------------------------------------


def baseline_tree(source: Path) -> Path:
    """A temporary tree in which ``flask_taskq`` is the one of ``source`` (another
    checkout, e.g. ``git archive main | tar -x -C DIR``) and ``bench`` a copy of this
    one: the driver and its workers, started there with our interpreter, measure the
    baseline's library with today's benchmark code. A copy, not a link, because the
    driver puts the directory its file resolves to first on ``sys.path``."""
    package = source / "flask_taskq"
    if not (package / "__init__.py").exists():
        raise SystemExit(f"--baseline: {source} has no flask_taskq/ package")
    tree = Path(tempfile.mkdtemp(prefix="taskq-bench-baseline-"))
    shutil.copytree(BENCH, tree / "bench", ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
    (tree / "flask_taskq").symlink_to(package.resolve(), target_is_directory=True)
    return tree


def precompile(*roots: Path) -> None:
    """Write the bytecode of ``flask_taskq`` and ``bench`` under each of ``roots``, as
    ``pip install`` did for the peers' packages: otherwise, with PYTHONDONTWRITEBYTECODE
    set or a read-only checkout, every worker we start compiles our sources again, which
    costs it time and about 3 MiB of RSS that an installed flask-taskq does not pay."""
    for root in roots:
        for package in ("flask_taskq", "bench"):
            if (root / package).is_dir():
                compileall.compile_dir(str(root / package), quiet=1)


# --- placement ---------------------------------------------------------------------------


def placement(pin: bool) -> dict | None:
    """Which CPU runs what, or None (not pinned). With CPUs c0, c1 (and c2 if there is
    one): redis-server on c0; a producer that runs alone (enqueue rows, the pre-fill of a
    drain) on c1; worker process i on c1, c2 (or c0 on a 2-CPU machine), c1, ...; the
    driver while workers run (the latency producer, the polling) on c2 or c0, so that it
    never shares a CPU with a worker. Every system gets the same placement."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    other = cpus[2] if len(cpus) > 2 else cpus[0]
    return {"redis": cpus[0], "producer": cpus[1], "side": other, "workers": [cpus[1], other]}


def describe_placement(place: dict | None) -> str:
    if place is None:
        return "not pinned (fewer than 2 CPUs, or --no-pin): the OS places every process"
    workers = place["workers"]
    return (
        f"redis-server on CPU {place['redis']}; a producer running alone (enqueue rows, the "
        f"untimed pre-fill of drains) on CPU {place['producer']}; the worker process on CPU "
        f"{workers[0]} (the 2-process drain adds one on CPU {workers[1]}"
        + (", sharing it with redis-server" if workers[1] == place["redis"] else "")
        + f"); the producer/poller while workers run (latency rows) on CPU {place['side']}"
        + (", beside redis-server" if place["side"] == place["redis"] else "")
        + "; the ceiling loops as the rows they bound (enqueue on the producer's CPU, drain "
        "on the worker's). All threads and child processes inherit their process's CPU, so "
        "Dramatiq's threads and Celery's pool share the one CPU a worker gets, as ours do. "
        "RabbitMQ, a service shared with the machine, is not pinned"
    )


def placement_args(place: dict | None) -> list[str]:
    if place is None:
        return []
    return [
        "--producer-cpu",
        str(place["producer"]),
        "--side-cpu",
        str(place["side"]),
        "--worker-cpus",
        ",".join(map(str, place["workers"])),
    ]


# --- running the driver ------------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def settle(idle_share: float = 0.85, window: float = 0.25, longest: float = 10.0) -> None:
    """Wait (at most ``longest`` s) until the machine's CPUs were at least ``idle_share``
    idle over a ``window``: what the previous system left running (workers exiting, Redis
    freeing a flushed database) must not be billed to the next one."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= idle_share:
            return


def run_driver(
    python: Path,
    system: str,
    measure: str,
    extra: list[str],
    url: str,
    timeout: float,
    env_extra: dict[str, str] | None = None,
    root: Path = ROOT,
) -> dict:
    """One run of bench.peers.driver (or, for ``system`` "ceiling", of
    bench.peers.ceiling) from the tree ``root``; its JSON line, or {"value": None,
    "error": ...}."""
    env = {
        **os.environ,
        "BENCH_REDIS_URL": url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        **(env_extra or {}),
    }
    if system == CEILING:
        argv = [str(python), "-m", "bench.peers.ceiling", measure, *extra]
    else:
        argv = [str(python), "-m", "bench.peers.driver", system, measure, *extra]
    try:
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"value": None, "error": f"driver timed out ({timeout:.0f}s)"}
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {"value": None, "error": f"driver exit {proc.returncode}: " + " | ".join(err)}


class Figure:
    """One row of the tables: values per column ("ours", a peer, "ours@rabbitmq",
    "celery@rabbitmq", "ceiling")."""

    def __init__(
        self,
        key: str,
        label: str,
        unit: str,
        lower_better: bool = False,
        scale: float = 1.0,
        fmt: str = ",.0f",
    ) -> None:
        self.key, self.label, self.unit = key, label, unit
        self.lower_better, self.scale, self.fmt = lower_better, scale, fmt
        self.values: dict[str, list[float | None]] = {}
        self.reasons: dict[str, str] = {}
        self.how: dict[str, str] = {}

    def add(self, column: str, value: float | None, reason: str = "") -> None:
        self.values.setdefault(column, []).append(None if value is None else value * self.scale)
        if value is None and reason:
            self.reasons[column] = reason

    def last(self, column: str) -> float | None:
        got = self.values.get(column) or [None]
        return got[-1]

    def median(self, column: str) -> float | None:
        got = [v for v in self.values.get(column, []) if v is not None]
        return statistics.median(got) if got else None

    def cell(self, column: str, spread: bool = True) -> str:
        tried = self.values.get(column, [])
        got = [v for v in tried if v is not None]
        if not got:
            if column == CEILING and column not in self.reasons:
                return "-"
            reason = self.reasons.get(column, "not run")
            return f"n/a ({reason})" if reason.startswith("no bulk") else f"no figure ({reason})"
        text = f"{statistics.median(got):{self.fmt}}"
        if spread and len(got) > 1:
            text += f" ({min(got):{self.fmt}}-{max(got):{self.fmt}})"
        if len(got) < len(tried):
            text += f" [{len(got)}/{len(tried)} runs]"
        return text

    def better(self, ours: float, other: float) -> float:
        """How much better ours is than ``other``: above 1 means ours leads."""
        return other / ours if self.lower_better else ours / other

    def ratio(self, ours: str = "ours", peers: tuple[str, ...] = PEERS) -> str:
        mine = self.median(ours)
        found = {s: self.median(s) for s in peers}
        found = {s: v for s, v in found.items() if v}
        if not mine or not found:
            return "-"
        best = (min if self.lower_better else max)(found, key=found.get)
        return f"{self.better(mine, found[best]):.2f}x vs {best.split('@')[0]}"

    def ceiling_ratio(self) -> str:
        """ours / ceiling for rates, ceiling / ours for bytes and RSS (whose ceiling is
        the import floor): the share of the ceiling reached (1.00 is the ceiling)."""
        mine, top = self.median("ours"), self.median(CEILING)
        if not mine or not top:
            return "-"
        return f"{self.better(mine, top):.2f}"


class Step:
    """One measurement of the plan: a driver MEASURE with its arguments, the figures it
    fills (figure, key of the JSON line), the ceiling measurement beside it (if any),
    whether it runs on RabbitMQ too, and whether it runs in every run or once."""

    def __init__(
        self,
        measure: str,
        extra: list[str],
        picks: list[tuple[Figure, str]],
        ceiling: list[str] | None = None,
        amqp: bool = False,
        once: bool = False,
    ) -> None:
        self.measure, self.extra, self.picks = measure, extra, picks
        self.ceiling, self.amqp, self.once = ceiling, amqp, once


def build_figures(args) -> tuple[list[Figure], list[Step]]:
    """The rows, and the plan that fills them."""
    lat = ("ms", True, 1000, ",.2f")
    f = {
        "enqueue": Figure("enqueue", "enqueue, single call", "/s"),
        "bulk": Figure("bulk", "enqueue, bulk API", "/s"),
        "drain1": Figure("drain1", "drain, default options, 1 worker process", "/s"),
        "drain2": Figure("drain2", "drain, default options, 2 worker processes", "/s"),
        "drain_ignored": Figure("drain_ignored", "drain, results ignored (1 process)", "/s"),
        "drain_results": Figure("drain_results", "drain, results stored (1 process)", "/s"),
        "lat_lo_50": Figure("lat_lo_50", f"start latency p50 @{args.rate_lo}/s", *lat),
        "lat_lo_99": Figure("lat_lo_99", f"start latency p99 @{args.rate_lo}/s", *lat),
        "lat_hi_50": Figure("lat_hi_50", f"start latency p50 @{args.rate_hi:,}/s", *lat),
        "lat_hi_99": Figure("lat_hi_99", f"start latency p99 @{args.rate_hi:,}/s", *lat),
        "rss_idle": Figure("rss_idle", "worker RSS idle, before any task", "MiB", True, 1, ",.1f"),
        "rss": Figure("rss", "worker RSS after the 1-process drain", "MiB", True, 1, ",.1f"),
        "mem_queued": Figure("mem_queued", "Redis memory per queued task", "B", True),
        "mem_result": Figure("mem_result", "Redis memory per stored result", "B", True),
    }
    n = ["--n", str(args.n)]
    plan = [
        Step("enqueue", n, [(f["enqueue"], "value")], ceiling=["enqueue", *n], amqp=True),
        Step("bulk", n, [(f["bulk"], "value")], ceiling=["bulk", *n], amqp=True),
        Step(
            "drain",
            n,
            [(f["drain1"], "value"), (f["rss"], "rss_mib")],
            ceiling=["drain", *n, "--task", "stored"],
            amqp=True,
        ),
        Step("drain", [*n, "--procs", "2"], [(f["drain2"], "value")], amqp=True),
        Step(
            "drain",
            [*n, "--task", "ignored"],
            [(f["drain_ignored"], "value")],
            ceiling=["drain", *n, "--task", "ignored"],
        ),
        Step(
            "drain",
            [*n, "--task", "stored"],
            [(f["drain_results"], "value")],
            ceiling=["drain", *n, "--task", "stored"],
        ),
        Step(
            "latency",
            ["--rate", str(args.rate_lo), "--seconds", str(args.seconds_lo)],
            [(f["lat_lo_50"], "value"), (f["lat_lo_99"], "p99")],
            ceiling=["latency", "--rate", str(args.rate_lo), "--seconds", str(args.seconds_lo)],
            amqp=True,
        ),
        Step(
            "latency",
            ["--rate", str(args.rate_hi), "--seconds", str(args.seconds_hi)],
            [(f["lat_hi_50"], "value"), (f["lat_hi_99"], "p99")],
            ceiling=["latency", "--rate", str(args.rate_hi), "--seconds", str(args.seconds_hi)],
        ),
        Step(
            "memory",
            ["--n", str(args.n_memory)],
            [
                (f["rss_idle"], "value"),
                (f["mem_queued"], "queued_bytes"),
                (f["mem_result"], "result_bytes"),
            ],
            ceiling=["memory", "--n", str(args.n_memory)],
            once=True,
        ),
    ]
    return list(f.values()), plan


# --- output ------------------------------------------------------------------------------


def name(column: str) -> str:
    """How a column is headed: "flask-taskq", "rq", "Celery on RabbitMQ", ..."""
    if column == BASELINE:
        return "flask-taskq baseline"
    system, _, broker = column.partition("@")
    if not broker:
        return "flask-taskq" if system == "ours" else system
    shown = {"ours": "flask-taskq", "celery": "Celery"}.get(system, system)
    return f"{shown} on {dict(rabbitmq='RabbitMQ', redis='Redis').get(broker, broker)}"


def table_rows(figures: list[Figure], systems: list[str], baseline: bool) -> list[list[str]]:
    """The Redis table: every system, the ceiling, ours / best peer, ours / ceiling (and
    with --baseline: the baseline's column and ours / baseline)."""
    columns = [*systems[:1], BASELINE, *systems[1:]] if baseline else list(systems)
    head = ["figure", *map(name, columns), "ceiling", "ours / best peer", "ours / ceiling"]
    rows = [head + (["ours / baseline"] if baseline else [])]
    for fig in figures:
        rows.append(
            [
                f"{fig.label} ({fig.unit})",
                *[fig.cell(s) for s in columns],
                fig.cell(CEILING),
                fig.ratio(),
                fig.ceiling_ratio(),
                *([fig.ratio("ours", (BASELINE,)).split("x")[0]] if baseline else []),
            ]
        )
    return rows


def amqp_rows(figures: list[Figure], systems: list[str]) -> list[list[str]]:
    """The RabbitMQ table: ours and Celery on Redis and on RabbitMQ, and the ratio of the
    two on RabbitMQ."""
    redis_cols = [s for s in AMQP_SYSTEMS if s in systems]
    columns = [*redis_cols, *(f"{s}@rabbitmq" for s in redis_cols)]
    head = [
        "figure",
        *(name(c if "@" in c else f"{c}@redis") for c in columns),
        "ours / Celery on RabbitMQ",
    ]
    rows = [head]
    for fig in figures:
        if "ours@rabbitmq" not in fig.values and "celery@rabbitmq" not in fig.values:
            continue
        rows.append(
            [
                f"{fig.label} ({fig.unit})",
                *[fig.cell(c) for c in columns],
                fig.ratio("ours@rabbitmq", ("celery@rabbitmq",)),
            ]
        )
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for j, row in enumerate(rows):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for j, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if j == 0:
            out.append(
                "|"
                + "|".join(
                    ("-" * (w + 1) + ":") if i else "-" * (w + 2) for i, w in enumerate(widths)
                )
                + "|"
            )
    return "\n".join(out)


def replace_section(path: Path, begin: str, end: str, body: str, template: str) -> None:
    text = path.read_text() if path.exists() else template
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}")


def draw_chart(figures: list[Figure], systems: list[str], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no chart written"
    groups = [
        ("Throughput (tasks/s, higher is better)", [f for f in figures if f.unit == "/s"], True),
        ("Start latency (ms, lower is better)", [f for f in figures if f.unit == "ms"], True),
        ("Worker RSS (MiB, lower better)", [f for f in figures if f.unit == "MiB"], False),
        ("Redis bytes (lower better)", [f for f in figures if f.unit == "B"], False),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(19, 5.5), gridspec_kw={"width_ratios": [6, 4, 2, 2]})
    colors = dict(
        zip(SYSTEMS, ["#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"], strict=True)
    )
    for ax, (title, rows, log_scale) in zip(axes, groups, strict=True):
        width = 0.8 / len(systems)
        for k, system in enumerate(systems):
            xs, heights, lows, highs = [], [], [], []
            for i, f in enumerate(rows):
                got = [v for v in f.values.get(system, []) if v is not None]
                if got:
                    med = statistics.median(got)
                    xs.append(i + (k - (len(systems) - 1) / 2) * width)
                    heights.append(med)
                    lows.append(med - min(got))
                    highs.append(max(got) - med)
            ax.bar(
                xs,
                heights,
                width,
                yerr=[lows, highs],
                capsize=2,
                color=colors[system],
                label="flask-taskq" if system == "ours" else system,
            )
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(
            [
                f.label.replace("start latency ", "")
                .replace("worker RSS after the ", "after ")
                .replace("worker RSS ", "")
                .replace("Redis memory ", "")
                .replace(", ", ",\n")
                for f in rows
            ],
            fontsize=8,
            rotation=20,
            ha="right",
        )
        if log_scale:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("flask-taskq vs peers: median of runs, bars show min-max", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return ""


DOC_TEMPLATE = (
    """\
# Performance

<!-- Written by bench/compare.py and bench/scaling.py between the marker comments; the
     rest of this file is hand-written and kept on reruns. -->

flask-taskq side by side with Celery, RQ, Dramatiq and Huey on the same machine and the
same Redis, measured by `bench/compare.py`; and how flask-taskq alone scales with worker
processes and queue length, measured by `bench/scaling.py`. Method details:
`bench/README.md`.

## Side by side

![flask-taskq vs peers](_static/performance.png)

"""
    + BEGIN
    + "\n"
    + END
    + """

## Scaling

![flask-taskq scaling](_static/scaling.png)

<!-- scaling:begin -->
<!-- scaling:end -->
"""
)


def explanations(figures: list[Figure], systems: list[str], meta: dict, md: bool) -> list[str]:
    """The lines printed and written under the tables: placement, defaults, APIs."""
    code = (lambda t: f"`{t}`") if md else (lambda t: t)
    hows = sorted({f"{name(s)}: {code(h)}" for f in figures for s, h in f.how.items()})
    lines = [
        "Ratios: ours / best peer is ours / best for rates and best / ours for latency, RSS "
        "and bytes (lower is better): above 1 means flask-taskq leads. ours / ceiling is "
        "the share of the raw redis-py loop reached (ceiling / ours for bytes and RSS): 1.00 "
        "is the ceiling. The ceiling of the default-options and results-stored drains stores "
        "a result too (one SET EX per task); that of the results-ignored drain does not. The "
        "idle RSS's ceiling is the import floor: a process of our interpreter and venv that "
        "only imports flask and redis and opens one connection.",
        "",
        "CPU placement: " + meta["placement"] + ".",
        "",
        "Default task options (the headline rows; enqueue and start latency use them too): "
        + "; ".join(f"{name(s)}: {DEFAULTS[s]}" for s in systems)
        + ".",
    ]
    floor = meta.get("rss_floor")
    if floor:
        lines += [
            "",
            f"Import floor of the idle RSS: {floor['value']:.1f} MiB (flask and redis-py "
            f"imported, hiredis {'loaded' if floor.get('hiredis') else 'not installed'}, one "
            "connection open)"
            + (
                f"; {floor['otel_blocked_mib']:.1f} MiB with the OpenTelemetry SDK kept out, "
                "which redis-py 8 imports whenever it is installed (our venv has it for the "
                "tests)"
                if floor.get("otel_sdk")
                else ""
            )
            + ".",
        ]
    if hows:
        lines += ["", "Bulk APIs used: " + "; ".join(hows) + "."]
    if meta.get("amqp"):
        lines += ["", "RabbitMQ: " + meta["amqp"] + "."]
    return lines


def render_doc(rows, rabbit_rows, figures, meta, systems, args, notes) -> str:
    lines = [
        f"Generated by `bench/compare.py` on {meta['date']}: N = {args.n:,}, "
        f"{args.runs} run(s) per figure (memory and idle RSS: one run, N = "
        f"{args.n_memory:,}), median (min-max).",
        "",
        f"Machine: {meta['hw']['cpus']} CPUs ({meta['hw']['cpu']}), {meta['hw']['memory']}, "
        f"{meta['hw']['os']}; Python {meta['hw']['python']}; Redis {meta['redis']} "
        "(private server, no persistence)"
        + (f"; RabbitMQ {meta['rabbitmq']}" if meta.get("rabbitmq") else "")
        + ".",
        "",
        "Versions: "
        + ", ".join(
            f"{name(s)} {meta['versions'].get(s, '?')}"
            for s in [*systems, *([BASELINE] if BASELINE in meta["versions"] else [])]
        )
        + ".",
        "",
        markdown_table(rows),
        "",
    ]
    if len(rabbit_rows) > 1:
        lines += ["On RabbitMQ, same run:", "", markdown_table(rabbit_rows), ""]
    lines += explanations(figures, systems, meta, md=True)
    lines += [""] + [f"Note: {n}." for n in notes]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument("--n", type=int, help="tasks per figure (default 10,000; --quick 2,000)")
    parser.add_argument(
        "--n-memory", type=int, help="tasks for the memory figures (default min(N, 5,000))"
    )
    parser.add_argument(
        "--only", default=",".join(SYSTEMS), help="comma-separated systems (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N=2,000, 1 run, shorter latency runs and settling (for development)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the tables only; leave docs/ alone"
    )
    parser.add_argument(
        "--no-rabbitmq", action="store_true", help="skip the RabbitMQ columns of ours and Celery"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of flask-taskq (a directory with flask_taskq/), measured as "
        "a column of its own beside ours, with today's bench code and our interpreter",
    )
    parser.add_argument("--rate-lo", type=int, default=100)
    parser.add_argument("--rate-hi", type=int, default=2000)
    parser.add_argument("--seconds-lo", type=float, help="default 5 (--quick 2)")
    parser.add_argument("--seconds-hi", type=float, help="default 2 (--quick 1)")
    parser.add_argument(
        "--settle",
        type=float,
        help="longest wait for an idle machine before a figure, s (default 10; --quick 2)",
    )
    args = parser.parse_args()
    for key, full, quick in (
        ("n", 10_000, 2000),
        ("runs", 3, 1),
        ("seconds_lo", 5.0, 2.0),
        ("seconds_hi", 2.0, 1.0),
        ("settle", 10.0, 2.0),
    ):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.n_memory is None:
        args.n_memory = min(args.n, 5000)
    return args


def main() -> None:
    args = parse_args()
    systems = [s for s in SYSTEMS if s in args.only.split(",")]
    if not systems:
        raise SystemExit(f"--only: choose from {','.join(SYSTEMS)}")

    pythons: dict[str, Path] = {"ours": Path(sys.executable), CEILING: Path(sys.executable)}
    unavailable: dict[str, str] = {}
    if any(s in PEERS for s in systems):
        peers_python, why = ensure_peers_venv()
        for s in PEERS:
            if peers_python is None:
                unavailable[s] = why
            else:
                pythons[s] = peers_python
    amqp_columns = (
        [] if args.no_rabbitmq else [f"{s}@rabbitmq" for s in AMQP_SYSTEMS if s in systems]
    )
    amqp_why = vhost.unavailable() if amqp_columns else ""

    roots: dict[str, Path] = {}
    if args.baseline:
        roots[BASELINE] = baseline_tree(args.baseline)
        pythons[BASELINE] = Path(sys.executable)
    precompile(ROOT, *roots.values())
    place = placement(not args.no_pin)
    figures, plan = build_figures(args)
    server, url = start_redis(cpus=[place["redis"]] if place else None)
    pin = placement_args(place)
    try:
        import redis

        meta = {
            "redis": redis.Redis.from_url(url).info("server")["redis_version"],
            "hw": hardware(),
            "versions": {},
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "placement": describe_placement(place),
            "rabbitmq": "",
            "amqp": "",
        }
        for s in systems:
            if s in unavailable:
                continue
            out = run_driver(pythons[s], s, "version", [], url, 120)
            meta["versions"][s] = out.get("version", "?")
            if out.get("error"):
                unavailable[s] = out["error"]
        if args.baseline:
            meta["versions"][BASELINE] = str(args.baseline)
        for column in amqp_columns:
            system = column.split("@")[0]
            if amqp_why:
                unavailable[column] = amqp_why
            elif system in unavailable:
                unavailable[column] = unavailable[system]
        if amqp_columns and not amqp_why:
            meta["rabbitmq"] = rabbitmq_version()
            meta["amqp"] = (
                "the server at 127.0.0.1:5672 (guest), a private vhost made and deleted with "
                "rabbitmqctl for every measurement; the private Redis keeps the rest (our "
                "store and result backend, Celery's result backend). Ours: durable classic "
                "queues, persistent messages, .delay() returns after the publisher confirm; "
                "Celery: its defaults (persistent messages, no publisher confirms)"
            )
        log(
            f"compare: N={args.n:,} runs={args.runs} systems={','.join(systems)} "
            f"redis {meta['redis']} cpus={meta['hw']['cpus']} versions={meta['versions']}"
        )
        log(f"placement: {meta['placement']}")
        amqp_figures = {id(fig) for step in plan if step.amqp for fig, _ in step.picks}
        for s, why in unavailable.items():
            if s in systems or s in amqp_columns:
                log(f"  {s}: unavailable: {why}")
                for fig in figures:
                    if s in systems or id(fig) in amqp_figures:
                        fig.reasons[s] = why
                        fig.values[s] = [None]

        active = [s for s in systems if s not in unavailable]
        if args.baseline:
            active.insert(1 if "ours" in active else 0, BASELINE)
        active_amqp = [c for c in amqp_columns if c not in unavailable]
        slow: dict[tuple[str, float], float] = {}  # producer could not keep the rate
        timeout = 300 + args.n / 50
        for run in range(args.runs):
            for step in plan:
                if step.once and run:
                    continue
                columns = list(active)
                if step.amqp:
                    columns += active_amqp
                if step.ceiling:
                    columns.append(CEILING)
                k = run % len(columns) if columns else 0
                for column in columns[k:] + columns[:k]:
                    out, took = measure(
                        column, step, pythons, url, pin, timeout, args.settle, roots
                    )
                    reason = out.get("na") or out.get("error", "")
                    if out.get("sent_rate"):
                        rate = float(step.extra[step.extra.index("--rate") + 1])
                        if out["sent_rate"] < 0.95 * rate:
                            slow[(column, rate)] = min(
                                out["sent_rate"], slow.get((column, rate), rate)
                            )
                    picks = step.picks
                    if column == CEILING:  # the drain's ceiling has no RSS
                        picks = [(f, key) for f, key in picks if key != "rss_mib"]
                        if step.measure == "memory" and out.get("value") is not None:
                            meta["rss_floor"] = out
                    for fig, key in picks:
                        ok = out.get("value") is not None or key.endswith("_bytes")
                        fig.add(column, out.get(key) if ok else None, reason)
                        if out.get("how"):
                            fig.how[column] = out["how"]
                    shown = ", ".join(
                        f"{fig.key}={fig.last(column):{fig.fmt}}"
                        if fig.last(column) is not None
                        else f"{fig.key}=-"
                        for fig, _ in picks
                    )
                    log(
                        f"run {run + 1}/{args.runs} {step.measure:<8} {' '.join(step.extra):<26} "
                        f"{column:<16} {shown}  ({took:.1f}s)" + (f"  [{reason}]" if reason else "")
                    )
                    if out.get("log"):
                        log("    worker log: " + out["log"].replace("\n", "\n    ")[-1500:])
    finally:
        server.terminate()
        server.wait(10)
        for tree in roots.values():
            shutil.rmtree(tree, ignore_errors=True)

    rows = table_rows(figures, systems, bool(args.baseline))
    rabbit = amqp_rows(figures, systems) if amqp_columns else []
    notes = [
        f"the {name(s)} producer sent at only {got:,.0f}/s of {rate:,.0f}/s in a latency run"
        for (s, rate), got in sorted(slow.items())
    ]
    print(
        f"\nN={args.n:,}  runs={args.runs}  median (min-max); memory and idle RSS: one run, "
        f"N={args.n_memory:,}"
    )
    print(text_table(rows))
    if len(rabbit) > 1:
        print("\nOn RabbitMQ, same run:")
        print(text_table(rabbit))
    print()
    for line in explanations(figures, systems, meta, md=False):
        print(line)
    for note in notes:
        print("note: " + note)
    if args.no_write:
        return
    doc = render_doc(rows, rabbit, figures, meta, systems, args, notes)
    replace_section(DOC, BEGIN, END, doc, DOC_TEMPLATE)
    note = draw_chart(figures, systems, CHART)
    log(
        f"wrote {DOC.relative_to(ROOT)}"
        + (f"; {note}" if note else f" and {CHART.relative_to(ROOT)}")
    )


def rabbitmq_version() -> str:
    try:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "version"], capture_output=True, timeout=60, check=True
        )
        return out.stdout.decode().strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def measure(
    column: str,
    step: Step,
    pythons: dict[str, Path],
    url: str,
    pin: list[str],
    timeout: float,
    settle_for: float,
    roots: dict[str, Path],
) -> tuple[dict, float]:
    """One run of one step for one column (a system on Redis, ``<system>@rabbitmq`` in
    a private vhost, the baseline, or the ceiling); (its JSON line, seconds taken)."""
    system, _, broker = column.partition("@")
    if column == BASELINE:
        system = "ours"
    if column == CEILING:
        argv = [*step.ceiling, *pin]
    else:
        argv = [*step.extra, *pin, "--timeout", str(timeout)]
        argv = [step.measure, *argv]
    measure_name, extra = argv[0], argv[1:]
    if broker != "rabbitmq":
        settle(longest=settle_for)
        started = time.monotonic()
        out = run_driver(
            pythons[column if column == BASELINE else system],
            system,
            measure_name,
            extra,
            url,
            timeout + 120,
            root=roots.get(column, ROOT),
        )
        return out, time.monotonic() - started
    try:
        with vhost.private_vhost() as amqp_url:
            settle(longest=settle_for)
            started = time.monotonic()
            out = run_driver(
                pythons[system],
                system,
                measure_name,
                extra,
                url,
                timeout + 120,
                {"BENCH_AMQP_URL": amqp_url},
            )
            return out, time.monotonic() - started
    except vhost.VhostError as exc:
        return {"value": None, "error": str(exc)}, 0.0


if __name__ == "__main__":
    main()
