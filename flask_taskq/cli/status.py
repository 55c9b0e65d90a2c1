"""``flask taskq status TASK_ID [--watch]``."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import click

from .. import states
from ..monitor import Monitor
from .common import app_state, check_broker, taskq_cli


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _bar(current: float, total: float, width: int = 30) -> str:
    share = 0.0 if not total else max(0.0, min(1.0, current / total))
    filled = round(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {current:g}/{total:g} ({share:.0%})"


def _running_on(state: Any, task_id: str) -> dict[str, Any] | None:
    for proc in Monitor(state.store.monitor).processes():
        for task in proc.get("running", []):
            if task["id"] == task_id:
                return {"worker": proc.get("process"), "started": task.get("started")}
    return None


def describe(state: Any, task_id: str) -> dict[str, Any]:
    """What is known about a task: its state document plus where it runs now."""
    meta = (state.backend.get(task_id) if state.backend is not None else None) or {}
    doc: dict[str, Any] = {
        "id": task_id,
        "state": meta.get("status", states.PENDING),
        "task": meta.get("task"),
        "date_done": meta.get("date_done"),
    }
    running = _running_on(state, task_id)
    if running:
        doc.update(running)
    result = meta.get("result")
    if isinstance(result, dict) and {"current", "total"} <= set(result):
        doc["progress"] = {"current": result["current"], "total": result["total"]}
    if meta.get("status") == states.SUCCESS:
        doc["result"] = result
    if "exc_type" in meta:
        doc["error"] = f"{meta['exc_type']}: {meta.get('exc_message', '')}"
    if meta.get("reason"):
        doc["reason"] = meta["reason"]
    return doc


def _render(doc: dict[str, Any]) -> str:
    lines = [f"task     {doc['id']}", f"state    {doc['state']}"]
    if doc.get("task"):
        lines.append(f"name     {doc['task']}")
    if doc.get("worker"):
        lines.append(f"worker   {doc['worker']} (since {_when(doc.get('started'))})")
    if doc.get("date_done"):
        lines.append(f"done     {_when(doc['date_done'])}")
    if "progress" in doc:
        lines.append(f"progress {_bar(doc['progress']['current'], doc['progress']['total'])}")
    if "result" in doc:
        lines.append(f"result   {doc['result']!r}")
    if "error" in doc:
        lines.append(f"error    {doc['error']}")
    if "reason" in doc:
        lines.append(f"reason   {doc['reason']}")
    return "\n".join(lines)


@taskq_cli.command("status")
@click.argument("task_id")
@click.option("--watch", is_flag=True, help="Refresh until the task is ready.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between refreshes with --watch.",
)
def status_command(task_id: str, watch: bool, as_json: bool, interval: float) -> None:
    """Show a task's state, worker, timings and progress."""
    state = app_state()
    check_broker(state)
    while True:
        doc = describe(state, task_id)
        if as_json:
            click.echo(json.dumps(doc, default=str))
        else:
            if watch:
                click.clear()
            click.echo(_render(doc))
        if not watch or doc["state"] in states.READY_STATES:
            return
        time.sleep(interval)
