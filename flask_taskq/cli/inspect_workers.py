"""``flask taskq inspect ping|active|reserved|registered|stats|queues|failed``: workers,
queues and failures as the workers' heartbeats and Redis show them (no broadcast)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from ..backlog import read_backlogs
from ..failures import recent_failures
from ..monitor import STAT_KINDS, Monitor
from .common import queue_names
from .inspect import inspect_group, inspect_state, json_option, text_table

watch_option = click.option(
    "--watch", is_flag=True, help="Refresh every --interval seconds (Ctrl-C to leave)."
)
interval_option = click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.2),
    help="Seconds between refreshes.",
)
#: Recent failures ``inspect failed`` lists.
RECENT_FAILURES = 50


def _monitor(state: Any) -> Monitor:
    return Monitor(state.store.monitor)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="seconds")


def _columns(names: list[str]) -> dict[str, str]:
    return {n: n.upper().replace("_", " ") for n in names}


def _emit(
    title: str, rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str, key: str
) -> None:
    if as_json:
        click.echo(json.dumps({key: rows}, indent=2, default=str))
        return
    if not rows:
        click.echo(empty)
        return
    click.echo(title)
    for line in text_table(_columns(columns), rows):
        click.echo(f"  {line}")


def _run(render: Callable[[Any, bool], None], as_json: bool, watch: bool, interval: float) -> None:
    state = inspect_state()
    while True:
        if watch and not as_json:
            click.clear()
        render(state, as_json)
        if not watch:
            return
        time.sleep(interval)


# -- the sections ------------------------------------------------------------------------------
def ping_rows(state: Any) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "worker": p.get("worker"),
            "process": p.get("process"),
            "host": p.get("host"),
            "pid": p.get("pid"),
            "pool": p.get("pool"),
            "queues": ",".join(p.get("queues", [])),
            "up_s": round(now - p.get("started", now)),
            "heartbeat_age_s": round(now - p.get("heartbeat", now), 1),
        }
        for p in _monitor(state).processes()
    ]


def render_ping(state: Any, as_json: bool) -> None:
    rows = ping_rows(state)
    _emit(
        f"{len(rows)} worker process(es) alive:",
        rows,
        ["worker", "process", "host", "pid", "pool", "queues", "up_s", "heartbeat_age_s"],
        as_json,
        "No workers alive.",
        "workers",
    )


def render_active(state: Any, as_json: bool) -> None:
    now = time.time()
    rows = [
        {
            "process": p.get("process"),
            "task_id": t["id"],
            "task": t["task"],
            "args": t.get("args", ""),
            "running_s": round(now - t.get("started", now), 1),
        }
        for p in _monitor(state).processes()
        for t in p.get("running", [])
    ]
    _emit(
        "Running tasks:",
        rows,
        ["process", "task_id", "task", "args", "running_s"],
        as_json,
        _idle(state, "No task is running."),
        "active",
    )


def render_reserved(state: Any, as_json: bool) -> None:
    rows = [
        {"process": p.get("process"), "prefetched": p.get("prefetched", 0)}
        for p in _monitor(state).processes()
    ]
    _emit(
        "Prefetched (leased, not started) per process:",
        rows,
        ["process", "prefetched"],
        as_json,
        "No workers alive.",
        "reserved",
    )


def render_registered(state: Any, as_json: bool) -> None:
    rows = []
    for name, task in sorted(state.taskqueue.tasks.items()):
        opts = task.options
        rows.append(
            {
                "task": name,
                "queue": opts.get("queue") or "-",
                "rate_limit": opts.get("rate_limit"),
                "time_limit": opts.get("time_limit"),
                "max_retries": task.max_retries,
            }
        )
    _emit(
        "Tasks registered in this app:",
        rows,
        ["task", "queue", "rate_limit", "time_limit", "max_retries"],
        as_json,
        "No tasks registered.",
        "registered",
    )


def render_stats(state: Any, as_json: bool) -> None:
    monitor = _monitor(state)
    now = time.time()
    procs = [
        {
            "process": p.get("process"),
            "processed": p.get("processed", 0),
            "failed": p.get("failed", 0),
            "retried": p.get("retried", 0),
            "rss_mb": round(p.get("rss", 0) / 2**20, 1),
            "up_s": round(now - p.get("started", now)),
        }
        for p in monitor.processes()
    ]
    per_task: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"processed": 0, "failed": 0, "retried": 0, "runtime_ms": 0.0}
    )
    for (kind, queue, task), value in monitor.totals(60).items():
        if kind in STAT_KINDS:  # not the histogram buckets
            per_task[(task, queue)][kind] += value
    tasks = []
    for (task, queue), c in sorted(per_task.items()):
        runs = c["processed"] + c["failed"] + c["retried"]
        tasks.append(
            {
                "task": task,
                "queue": queue,
                "processed": c["processed"],
                "failed": c["failed"],
                "retried": c["retried"],
                "avg_runtime_ms": round(c["runtime_ms"] / runs, 3) if runs else None,
            }
        )
    if as_json:
        click.echo(json.dumps({"processes": procs, "last_hour": tasks}, indent=2))
        return
    _emit(
        "Worker processes (since start):",
        procs,
        ["process", "processed", "failed", "retried", "rss_mb", "up_s"],
        False,
        "No workers alive.",
        "processes",
    )
    _emit(
        "Last hour, per task:",
        tasks,
        ["task", "queue", "processed", "failed", "retried", "avg_runtime_ms"],
        False,
        "Last hour: no task finished.",
        "last_hour",
    )


def queue_rows(state: Any) -> list[dict[str, Any]]:
    """Per queue: ``ready``, ``reserved``, ``delayed``, their sum ``backlog``, ``dead``,
    ``paused`` and ``shards`` (see :mod:`flask_taskq.backlog`); ``waiting`` is ``ready``
    under its former name."""
    names = queue_names(state, None)
    names += sorted(state.broker.known_queues() - set(names))
    backlogs = read_backlogs(state.broker, names)
    paused = _monitor(state).paused()
    rows = []
    for queue in names:
        row = backlogs[queue].as_dict()
        rows.append({**row, "waiting": row["ready"], "paused": queue in paused})
    return rows


QUEUE_COLUMNS = ["queue", "ready", "reserved", "delayed", "backlog", "dead", "paused"]


def _queue_lines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's lines: each queue, then its shards (indented) when it is sharded."""
    lines = []
    for row in rows:
        lines.append(row)
        for shard in row["shards"]:
            lines.append({**shard, "queue": f"  {shard['shard']}", "dead": None, "paused": None})
    return lines


def render_queues(state: Any, as_json: bool) -> None:
    rows = queue_rows(state)
    _emit(
        "Queues:",
        rows if as_json else _queue_lines(rows),
        QUEUE_COLUMNS,
        as_json,
        "No queues.",
        "queues",
    )


def dead_letter_rows(state: Any) -> list[dict[str, Any]]:
    """The newest 20 dead letters of each of the app's queues, newest first."""
    rows = []
    for queue in queue_names(state, None):
        for row in state.broker.dead_letters(queue, count=20):
            rows.append(
                {
                    "entry_id": row["entry_id"],
                    "queue": queue,
                    "task": row["task"],
                    "task_id": row["id"],
                    "reason": str(row["reason"])[:60],
                    "time": _iso(float(row["time"]) if row["time"] else None),
                }
            )
    rows.sort(key=lambda r: r["time"] or "", reverse=True)
    return rows


def recent_failure_rows(state: Any, limit: int = RECENT_FAILURES) -> list[dict[str, Any]]:
    """The newest tasks that failed without being dead-lettered, newest first."""
    return [
        {
            "task_id": f["id"],
            "task": f["task"],
            "queue": f["queue"],
            "time": _iso(f.get("time")),
            "exception": (f["exception"] or "(result not kept)")[:80],
            "worker": f.get("worker"),
            "retryable": f["retryable"],
        }
        for f in recent_failures(state, limit)
    ]


def render_failed(state: Any, as_json: bool) -> None:
    dead = dead_letter_rows(state)
    recent = recent_failure_rows(state)
    if as_json:  # "failed" (dead letters) came first; "recent_failures" was added
        click.echo(json.dumps({"failed": dead, "recent_failures": recent}, indent=2, default=str))
        return
    if not dead and not recent:
        click.echo("No failures.")
        return
    _emit(
        "Recent failures (no dead letter):",
        recent,
        ["task_id", "task", "queue", "time", "exception"],
        False,
        "Recent failures: none without a dead letter.",
        "recent_failures",
    )
    _emit(
        "Dead letters:",
        dead,
        ["entry_id", "queue", "task", "task_id", "reason", "time"],
        False,
        "Dead letters: none.",
        "failed",
    )


def render_summary(state: Any, as_json: bool) -> None:
    workers = ping_rows(state)
    queues = queue_rows(state)
    if as_json:
        click.echo(json.dumps({"workers": workers, "queues": queues}, indent=2))
        return
    _emit(
        f"Workers: {len(workers)} process(es) alive",
        workers,
        ["worker", "process", "pool", "queues", "up_s"],
        False,
        "Workers: none alive.",
        "workers",
    )
    _emit("Queues:", _queue_lines(queues), QUEUE_COLUMNS, False, "No queues.", "queues")


def _idle(state: Any, text: str) -> str:
    return text if _monitor(state).processes() else "No workers alive."


def _command(name: str, render: Callable[[Any, bool], None], doc: str) -> None:
    @inspect_group.command(name, help=doc)
    @json_option
    @watch_option
    @interval_option
    def command(as_json: bool, watch: bool, interval: float) -> None:
        _run(render, as_json, watch, interval)


_command("ping", render_ping, "Worker processes alive (from their heartbeats).")
_command("active", render_active, "Tasks running now, with their arguments.")
_command("reserved", render_reserved, "Messages each process leased but has not started.")
_command("registered", render_registered, "Tasks registered in this app.")
_command("stats", render_stats, "Counters per process and, for the last hour, per task.")
_command(
    "queues",
    render_queues,
    "Ready, reserved (delivered, not acked), delayed messages and their sum (backlog) per "
    "queue and shard, and dead letters.",
)
_command(
    "failed",
    render_failed,
    "Tasks that failed recently (without a dead letter) and "
    "the newest dead letters of every queue.",
)
_command("summary", render_summary, "Workers and queues on one screen.")
