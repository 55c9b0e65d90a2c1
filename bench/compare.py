"""flask-taskq side by side with Celery, RQ, Dramatiq and Huey (issue #7). From the repo root:

    .venv/bin/python bench/compare.py [--runs 3] [--n 10000] [--only ours,celery]
                                      [--quick] [--no-write]        (or: make bench)

It installs the peers from the pinned bench/requirements-peers.txt into bench/.venv-peers
(created on demand, re-created when that file changes), starts one private redis-server on a
free loopback port with persistence off, and then only spawns processes: every figure is one
run of ``bench.peers.driver`` (see there and bench/README.md for what each counts) in the
system's own interpreter, which prints one JSON line. Each figure is taken RUNS times; in
every run the systems take turns for each figure, in an order that rotates from run to run,
so drift on the machine hits all alike. The table gives the median and min-max, and the
ratio of ours to the best peer. Unless --no-write, it also writes the table into
docs/performance.md (between markers) and a chart to docs/_static/performance.png.
Progress goes to stderr; a system that cannot be installed or measured shows
"no figure (reason)" and the rest still runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import start_redis  # noqa: E402

BENCH = ROOT / "bench"
REQUIREMENTS = BENCH / "requirements-peers.txt"
PEERS_VENV = BENCH / ".venv-peers"
DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "_static" / "performance.png"
SYSTEMS = ("ours", "celery", "rq", "dramatiq", "huey")
PEERS = SYSTEMS[1:]
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
    python: Path, system: str, measure: str, extra: list[str], url: str, timeout: float
) -> dict:
    env = {
        **os.environ,
        "BENCH_REDIS_URL": url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [str(python), "-m", "bench.peers.driver", system, measure, *extra]
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"value": None, "error": f"driver timed out ({timeout:.0f}s)"}
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {"value": None, "error": f"driver exit {proc.returncode}: " + " | ".join(err)}


class Figure:
    """One row of the table."""

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
        self.values: dict[str, list[float | None]] = {s: [] for s in SYSTEMS}
        self.reasons: dict[str, str] = {}
        self.how: dict[str, str] = {}

    def add(self, system: str, value: float | None, reason: str = "") -> None:
        self.values[system].append(None if value is None else value * self.scale)
        if value is None and reason:
            self.reasons[system] = reason

    def median(self, system: str) -> float | None:
        got = [v for v in self.values[system] if v is not None]
        return statistics.median(got) if got else None

    def cell(self, system: str, spread: bool = True) -> str:
        got = [v for v in self.values[system] if v is not None]
        if not got:
            reason = self.reasons.get(system, "not run")
            return f"n/a ({reason})" if reason.startswith("no bulk") else f"no figure ({reason})"
        text = f"{statistics.median(got):{self.fmt}}"
        if spread and len(got) > 1:
            text += f" ({min(got):{self.fmt}}-{max(got):{self.fmt}})"
        if len(got) < len(self.values[system]):
            text += f" [{len(got)}/{len(self.values[system])} runs]"
        return text

    def ratio(self) -> str:
        ours = self.median("ours")
        peers = {s: self.median(s) for s in PEERS}
        peers = {s: v for s, v in peers.items() if v is not None}
        if ours is None or not peers:
            return "-"
        pick = min if self.lower_better else max
        best = pick(peers, key=peers.get)
        value = peers[best] / ours if self.lower_better else ours / peers[best]
        return f"{value:.2f}x vs {best}"


def build_figures(args) -> tuple[list[Figure], list[tuple]]:
    """The rows, and the measurements: (driver measure, extra argv, [(figure, picker)])."""
    f = {
        "enqueue": Figure("enqueue", "enqueue, single call", "/s"),
        "bulk": Figure("bulk", "enqueue, bulk API", "/s"),
        "drain1": Figure("drain1", "drain, 1 worker process", "/s"),
        "drain2": Figure("drain2", "drain, 2 worker processes", "/s"),
        "drain_results": Figure("drain_results", "drain, results stored (1 process)", "/s"),
        "lat_lo_50": Figure(
            "lat_lo_50", f"start latency p50 @{args.rate_lo}/s", "ms", True, 1000, ",.2f"
        ),
        "lat_lo_99": Figure(
            "lat_lo_99", f"start latency p99 @{args.rate_lo}/s", "ms", True, 1000, ",.2f"
        ),
        "lat_hi_50": Figure(
            "lat_hi_50", f"start latency p50 @{args.rate_hi:,}/s", "ms", True, 1000, ",.2f"
        ),
        "lat_hi_99": Figure(
            "lat_hi_99", f"start latency p99 @{args.rate_hi:,}/s", "ms", True, 1000, ",.2f"
        ),
        "rss": Figure("rss", "worker RSS after the 1-process drain", "MiB", True, 1, ",.1f"),
    }
    n = ["--n", str(args.n)]
    plan = [
        ("enqueue", n, [(f["enqueue"], "value")]),
        ("bulk", n, [(f["bulk"], "value")]),
        ("drain", n, [(f["drain1"], "value"), (f["rss"], "rss_mib")]),
        ("drain", [*n, "--procs", "2"], [(f["drain2"], "value")]),
        ("drain", [*n, "--results"], [(f["drain_results"], "value")]),
        (
            "latency",
            ["--rate", str(args.rate_lo), "--seconds", str(args.seconds_lo)],
            [(f["lat_lo_50"], "value"), (f["lat_lo_99"], "p99")],
        ),
        (
            "latency",
            ["--rate", str(args.rate_hi), "--seconds", str(args.seconds_hi)],
            [(f["lat_hi_50"], "value"), (f["lat_hi_99"], "p99")],
        ),
    ]
    return list(f.values()), plan


# --- output ------------------------------------------------------------------------------


def table_rows(figures: list[Figure], systems: list[str]) -> list[list[str]]:
    head = ["figure", *[("flask-taskq" if s == "ours" else s) for s in systems], "ours / best peer"]
    rows = [head]
    for fig in figures:
        rows.append([f"{fig.label} ({fig.unit})", *[fig.cell(s) for s in systems], fig.ratio()])
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
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [5, 4, 2]})
    colors = dict(
        zip(SYSTEMS, ["#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"], strict=True)
    )
    for ax, (title, rows, log_scale) in zip(axes, groups, strict=True):
        width = 0.8 / len(systems)
        for k, system in enumerate(systems):
            xs, heights, lows, highs = [], [], [], []
            for i, f in enumerate(rows):
                got = [v for v in f.values[system] if v is not None]
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


def render_doc(rows, figures, meta, systems, args) -> str:
    hows = sorted({f"{s}: `{h}`" for f in figures for s, h in f.how.items()})
    lines = [
        f"Generated by `bench/compare.py` on {meta['date']}: N = {args.n:,}, "
        f"{args.runs} run(s) per figure, median (min-max).",
        "",
        f"Machine: {meta['hw']['cpus']} CPUs ({meta['hw']['cpu']}), {meta['hw']['memory']}, "
        f"{meta['hw']['os']}; Python {meta['hw']['python']}; Redis {meta['redis']} "
        "(private server, no persistence).",
        "",
        "Versions: "
        + ", ".join(
            f"{'flask-taskq' if s == 'ours' else s} {meta['versions'].get(s, '?')}" for s in systems
        )
        + ".",
        "",
        markdown_table(rows),
        "",
        "Ratio: for rates, ours / best peer; for latency and RSS (lower is better), best "
        "peer / ours. Either way, a ratio above 1 means flask-taskq leads.",
        "",
    ]
    if hows:
        lines += ["Bulk APIs used: " + "; ".join(hows) + ".", ""]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument("--n", type=int, help="tasks per figure (default 10,000; --quick 2,000)")
    parser.add_argument(
        "--only", default=",".join(SYSTEMS), help="comma-separated systems (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N=2,000, 1 run, shorter latency runs (for development)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table only; leave docs/ alone"
    )
    parser.add_argument("--rate-lo", type=int, default=100)
    parser.add_argument("--rate-hi", type=int, default=2000)
    parser.add_argument("--seconds-lo", type=float, help="default 5 (--quick 2)")
    parser.add_argument("--seconds-hi", type=float, help="default 2 (--quick 1)")
    args = parser.parse_args()
    for name, full, quick in (
        ("n", 10_000, 2000),
        ("runs", 3, 1),
        ("seconds_lo", 5.0, 2.0),
        ("seconds_hi", 2.0, 1.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    systems = [s for s in SYSTEMS if s in args.only.split(",")]
    if not systems:
        raise SystemExit(f"--only: choose from {','.join(SYSTEMS)}")

    pythons: dict[str, Path] = {"ours": Path(sys.executable)}
    unavailable: dict[str, str] = {}
    if any(s in PEERS for s in systems):
        peers_python, why = ensure_peers_venv()
        for s in PEERS:
            if peers_python is None:
                unavailable[s] = why
            else:
                pythons[s] = peers_python

    figures, plan = build_figures(args)
    server, url = start_redis()
    try:
        import redis

        meta = {
            "redis": redis.Redis.from_url(url).info("server")["redis_version"],
            "hw": hardware(),
            "versions": {},
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        }
        for s in systems:
            if s in unavailable:
                continue
            out = run_driver(pythons[s], s, "version", [], url, 120)
            meta["versions"][s] = out.get("version", "?")
            if out.get("error"):
                unavailable[s] = out["error"]
        log(
            f"compare: N={args.n:,} runs={args.runs} systems={','.join(systems)} "
            f"redis {meta['redis']} cpus={meta['hw']['cpus']} versions={meta['versions']}"
        )
        for s, why in unavailable.items():
            if s in systems:
                log(f"  {s}: unavailable: {why}")
                for fig in figures:
                    fig.reasons[s] = why
                    fig.values[s] = [None]

        active = [s for s in systems if s not in unavailable]
        slow: dict[tuple[str, float], float] = {}  # producer could not keep the rate
        timeout = 300 + args.n / 50
        for run in range(args.runs):
            order = active[run % len(active) :] + active[: run % len(active)] if active else []
            for measure, extra, picks in plan:
                for system in order:
                    settle()
                    started = time.monotonic()
                    out = run_driver(
                        pythons[system],
                        system,
                        measure,
                        [*extra, "--timeout", str(timeout)],
                        url,
                        timeout + 120,
                    )
                    reason = out.get("na") or out.get("error", "")
                    if out.get("sent_rate"):
                        rate = float(extra[extra.index("--rate") + 1])
                        if out["sent_rate"] < 0.95 * rate:
                            slow[(system, rate)] = min(
                                out["sent_rate"], slow.get((system, rate), rate)
                            )
                    for fig, key in picks:
                        value = out.get(key) if out.get("value") is not None else None
                        fig.add(system, value, reason)
                        if out.get("how"):
                            fig.how[system] = out["how"]
                    shown = ", ".join(
                        f"{fig.key}={fig.values[system][-1]:{fig.fmt}}"
                        if fig.values[system][-1] is not None
                        else f"{fig.key}=-"
                        for fig, _ in picks
                    )
                    log(
                        f"run {run + 1}/{args.runs} {measure:<8} {' '.join(extra):<28} "
                        f"{system:<9} {shown}  ({time.monotonic() - started:.1f}s)"
                        + (f"  [{reason}]" if reason else "")
                    )
                    if out.get("log"):
                        log("    worker log: " + out["log"].replace("\n", "\n    ")[-1500:])
    finally:
        server.terminate()
        server.wait(10)

    rows = table_rows(figures, systems)
    print(
        f"\nN={args.n:,}  runs={args.runs}  median (min-max); ratio > 1 means flask-taskq "
        "leads (latency and RSS: best peer / ours)"
    )
    print(text_table(rows))
    hows = sorted({f"{s}: {h}" for f in figures for s, h in f.how.items()})
    if hows:
        print("bulk APIs: " + "; ".join(hows))
    notes = [
        f"the {s} producer sent at only {got:,.0f}/s of {rate:,.0f}/s in a latency run"
        for (s, rate), got in sorted(slow.items())
    ]
    for note in notes:
        print("note: " + note)
    if args.no_write:
        return
    doc = render_doc(rows, figures, meta, systems, args)
    if notes:
        doc += "\n" + "".join(f"Note: {n}.\n" for n in notes)
    replace_section(DOC, BEGIN, END, doc, DOC_TEMPLATE)
    note = draw_chart(figures, systems, CHART)
    log(
        f"wrote {DOC.relative_to(ROOT)}"
        + (f"; {note}" if note else f" and {CHART.relative_to(ROOT)}")
    )


if __name__ == "__main__":
    main()
