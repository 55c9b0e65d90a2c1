"""What the dashboard shows, read from Redis: the broker (queues, dead letters), the result
backend (task states), the worker heartbeats and counters (:class:`~flask_taskq.monitor.
Monitor`) and beat's state. Nothing here writes except the functions under "actions"."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from .. import states
from ..backlog import read_backlogs
from ..beat import read_schedule
from ..exceptions import DecodeError
from ..failures import call_preview
from ..keys import DEFAULT_PRIORITY
from ..message import Message
from ..monitor import STAT_KINDS, Monitor
from ..signing import peek
from ..worker import default_queues

if TYPE_CHECKING:
    from ..state import AppState

#: Minutes the charts span.
CHART_MINUTES = 60
#: Dead letters read per queue for the failures page and to find a task's dead letter.
DEAD_LETTER_LIMIT = 200
#: Characters of a result or of arguments shown before cutting.
PREVIEW = 20_000
#: Dead letters requeued per call when a whole queue is requeued.
PAGE = 500


def monitor(state: AppState) -> Monitor | None:
    """The heartbeat and counter reader (the store has one on every broker)."""
    return Monitor(state.store.monitor)


def queue_names(state: AppState) -> list[str]:
    """The app's queues, then every other queue a worker consumed or that holds dead
    letters."""
    names = default_queues(state)
    known = set(state.broker.dead_letter_queues()) | state.broker.known_queues()
    return names + sorted(known - set(names))


def preview(value: Any, limit: int = PREVIEW) -> str:
    """``value`` as indented JSON (``repr`` for what JSON cannot hold), cut at ``limit``."""
    try:
        text = json.dumps(value, indent=2, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "\n... (cut)"


# -- counters and charts --------------------------------------------------------------------
def activity(mon: Monitor | None, minutes: int = CHART_MINUTES) -> dict[str, Any]:
    """Per-minute series for the charts plus totals over the span.

    ``series`` has lists of equal length: ``minutes`` (unix time of each minute's start),
    ``processed``, ``failed``, ``retried``, ``failure_rate`` (percent of finished tasks
    that failed, None in a minute without any) and ``runtime_ms`` (mean run time, None
    without runs). ``by_queue`` and ``by_task`` sum the span's counters.
    """
    rows = mon.stats(minutes) if mon is not None else []
    series: dict[str, list[Any]] = {
        k: [] for k in ("minutes", "processed", "failed", "retried", "failure_rate", "runtime_ms")
    }
    by_queue: dict[str, dict[str, float]] = {}
    by_task: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        minute = {"processed": 0, "failed": 0, "retried": 0, "runtime_ms": 0}
        for (kind, queue, task), value in row["counts"].items():
            if kind not in STAT_KINDS:  # the run-time histogram's buckets
                continue
            minute[kind] = minute.get(kind, 0) + value
            for bucket in (
                by_queue.setdefault(queue, _zero()),
                by_task.setdefault((queue, task), _zero()),
            ):
                bucket[kind] = bucket.get(kind, 0) + value
        finished = minute["processed"] + minute["failed"]
        runs = finished + minute["retried"]
        series["minutes"].append(row["minute"])
        for kind in ("processed", "failed", "retried"):
            series[kind].append(minute[kind])
        series["failure_rate"].append(
            round(100 * minute["failed"] / finished, 1) if finished else None
        )
        series["runtime_ms"].append(round(minute["runtime_ms"] / runs, 1) if runs else None)
    totals = {k: sum(series[k]) for k in ("processed", "failed", "retried")}
    finished = totals["processed"] + totals["failed"]
    totals["failure_rate"] = round(100 * totals["failed"] / finished, 1) if finished else None
    tasks = [{"queue": q, "task": t, **_rates(c)} for (q, t), c in sorted(by_task.items())]
    return {
        "series": series,
        "totals": totals,
        "minutes": minutes,
        "by_queue": {q: _rates(c) for q, c in by_queue.items()},
        "by_task": tasks,
    }


def _zero() -> dict[str, float]:
    return {"processed": 0, "failed": 0, "retried": 0, "runtime_ms": 0}


def _rates(counts: dict[str, float]) -> dict[str, Any]:
    finished = counts["processed"] + counts["failed"]
    runs = finished + counts["retried"]
    return {
        "processed": counts["processed"],
        "failed": counts["failed"],
        "retried": counts["retried"],
        "failure_rate": round(100 * counts["failed"] / finished, 1) if finished else None,
        "runtime_ms": round(counts["runtime_ms"] / runs, 1) if runs else None,
    }


# -- queues and workers ----------------------------------------------------------------------
def queues(
    state: AppState, mon: Monitor | None, processes: list[dict[str, Any]], stats: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per queue: ``ready``, ``reserved``, ``delayed`` messages and their sum
    ``backlog`` (with ``shards``, the same per shard of a sharded queue), ``dead``
    messages, whether it is ``paused``, the ``consumers`` (processes) fetching from it and
    its counters."""
    names = queue_names(state)
    counts = read_backlogs(state.broker, names)
    paused = mon.paused() if mon is not None else set()
    empty = _rates(_zero())
    rows = []
    for name in names:
        consumers = sum(1 for p in processes if name in (p.get("queues") or ()))
        rows.append(
            {
                "name": name,
                **counts[name].as_dict(),
                "paused": name in paused,
                "consumers": consumers,
                **stats["by_queue"].get(name, empty),
            }
        )
    return rows


def workers(processes: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """Heartbeats grouped by worker (a prefork worker has one per child)."""
    now = time.time() if now is None else now
    grouped: dict[str, dict[str, Any]] = {}
    for proc in processes:
        name = str(proc.get("worker") or proc.get("process"))
        w = grouped.setdefault(
            name,
            {
                "name": name,
                "host": proc.get("host"),
                "pool": proc.get("pool"),
                "processes": [],
                "concurrency": 0,
                "queues": [],
                "running": [],
                "processed": 0,
                "failed": 0,
                "retried": 0,
                "rss": 0,
                "prefetched": 0,
                "started": proc.get("started"),
                "heartbeat": proc.get("heartbeat"),
                "paused": proc.get("paused") or [],
            },
        )
        w["processes"].append(proc)
        w["concurrency"] += int(proc.get("concurrency") or 0)
        w["queues"] += [q for q in proc.get("queues") or () if q not in w["queues"]]
        for task in proc.get("running") or ():
            w["running"].append(
                {
                    **task,
                    "process": proc.get("process"),
                    "elapsed": max(0.0, now - float(task.get("started") or now)),
                }
            )
        for key in ("processed", "failed", "retried", "rss", "prefetched"):
            w[key] += int(proc.get(key) or 0)
        w["started"] = min(w["started"] or now, proc.get("started") or now)
        w["heartbeat"] = max(w["heartbeat"] or 0, proc.get("heartbeat") or 0)
    return sorted(grouped.values(), key=lambda w: w["name"])


# -- dead letters ---------------------------------------------------------------------------
def _entry_order(entry_id: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in entry_id.split("-"))
    except ValueError:
        return (0,)


def describe_dead(state: AppState, queue: str, row: dict[str, object]) -> dict[str, Any]:
    """A dead letter with its message decoded: ``message`` (a :class:`Message`) and
    ``call`` (its arguments as text), or ``decode_error`` and ``unverified``: the
    ``{"task", "id"}`` its body claims (never trusted, only shown), or None."""
    out: dict[str, Any] = {
        **row,
        "queue": queue,
        "message": None,
        "call": None,
        "decode_error": None,
        "unverified": None,
    }
    body = row.get("body") or b""
    try:
        message = Message.from_bytes(body, state.serializer)  # type: ignore[arg-type]
    except DecodeError as exc:
        out["decode_error"] = str(exc)
        claimed = peek(body) if isinstance(body, bytes) else None
        if claimed is not None:
            out["unverified"] = {"task": claimed[0], "id": claimed[1]}
    else:
        out["message"] = message
        out["call"] = call_preview(message.args, message.kwargs)
    try:
        out["time"] = float(row.get("time") or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out["time"] = None
    return out


def dead_letters(
    state: AppState, queue: str | None = None, limit: int = DEAD_LETTER_LIMIT
) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters of ``queue`` (or of every queue), newest first."""
    names = [queue] if queue else state.broker.dead_letter_queues()
    rows = [
        describe_dead(state, name, row)
        for name in names
        for row in state.broker.dead_letters(name, limit)
    ]
    rows.sort(key=lambda r: _entry_order(str(r["entry_id"])), reverse=True)
    return rows[:limit]


def dead_letter_counts(state: AppState) -> dict[str, int]:
    """Queue -> number of dead letters, for queues that hold any."""
    return {q: state.broker.dead_letter_count(q) for q in state.broker.dead_letter_queues()}


def find_dead_letter(
    state: AppState, task_id: str, queue: str | None = None, entry_id: str | None = None
) -> dict[str, Any] | None:
    """The newest dead letter of ``task_id``: entry ``entry_id`` of ``queue`` when given
    (and it is this task's), else the newest among the last :data:`DEAD_LETTER_LIMIT` of
    each queue."""
    if queue and entry_id:
        row = state.broker.dead_letter_get(queue, entry_id)
        if row is not None and row.get("id") == task_id:
            return describe_dead(state, queue, row)
        return None
    found = [row for row in dead_letters(state, queue) if row.get("id") == task_id]
    return found[0] if found else None


# -- recent failures (no dead letter) -------------------------------------------------------
def retry_failure(state: AppState, task_id: str) -> str | None:
    """Send the kept message of a recent failure again, unchanged (same task id),
    forgetting its old result, and drop it from the recent failures. Return the queue it
    went to, or None when no message of ``task_id`` is kept. The send is bounded by
    ``TASKQ_ENQUEUE_TIMEOUT``; when it fails the record is put back, its message kept for
    another try, and the broker's error goes on to the error page."""
    mon = monitor(state)
    if mon is None:
        return None
    record = mon.failure(task_id)
    if record is None or record.get("body") is None:
        return None
    record = mon.take_failure(task_id)  # atomic: a double click sends it once
    if record is None or record.get("body") is None:
        return None
    body: bytes = record["body"]
    try:
        priority = Message.from_bytes(body, state.serializer).priority
    except DecodeError:
        priority = DEFAULT_PRIORITY
    if state.backend is not None:
        state.backend.forget(task_id)
    state.store.replay.forget([task_id])  # not a replay
    try:
        state.broker.enqueue(
            record["queue"], priority, body, timeout=float(state.config["TASKQ_ENQUEUE_TIMEOUT"])
        )
    except Exception:
        mon.restore_failure(record)
        raise
    return str(record["queue"])


# -- tasks ----------------------------------------------------------------------------------
def progress(status: str, meta: Any) -> dict[str, Any] | None:
    """Progress of a task that reports it (``update_state``) with ``{"current": n,
    "total": m}`` (Celery's convention) or ``{"percent": p}``; None otherwise."""
    if status in states.READY_STATES or not isinstance(meta, dict):
        return None
    current, total = meta.get("current"), meta.get("total")
    if _number(current) and _number(total) and total > 0:
        percent = 100 * current / total
    elif _number(meta.get("percent")):
        percent = meta["percent"]
        current, total = None, None
    else:
        return None
    return {
        "percent": round(max(0.0, min(100.0, float(percent))), 1),
        "current": current,
        "total": total,
    }


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def running_task(
    processes: list[dict[str, Any]], task_id: str, now: float | None = None
) -> dict[str, Any] | None:
    """Where ``task_id`` runs now according to the heartbeats, or None."""
    now = time.time() if now is None else now
    for proc in processes:
        for task in proc.get("running") or ():
            if task.get("id") == task_id:
                return {
                    **task,
                    "worker": proc.get("worker"),
                    "process": proc.get("process"),
                    "elapsed": max(0.0, now - float(task.get("started") or now)),
                }
    return None


def task(
    state: AppState,
    task_id: str,
    processes: list[dict[str, Any]],
    dead_queue: str | None = None,
    dead_entry: str | None = None,
) -> dict[str, Any]:
    """Everything known about one task: its state document, where it runs, its dead
    letter and message, its progress and whether it can be retried from here."""
    doc = state.backend.get(task_id) if state.backend is not None else None
    status = (doc or {}).get("status") or states.PENDING
    meta = (doc or {}).get("result")
    running = running_task(processes, task_id)
    dead = find_dead_letter(state, task_id, dead_queue, dead_entry)
    message: Message | None = dead["message"] if dead else None
    mon = monitor(state) if dead is None else None
    failure = mon.failure(task_id) if mon is not None else None
    if message is None and failure is not None and failure.get("body") is not None:
        try:
            message = Message.from_bytes(failure["body"], state.serializer)
        except DecodeError:
            pass
    if dead is not None:
        retry = {
            "possible": True,
            "how": "requeue",
            "reason": f"requeues dead letter {dead['entry_id']} of queue {dead['queue']!r}",
        }
    elif failure is not None and failure.get("body") is not None:
        retry = {
            "possible": True,
            "how": "resend",
            "reason": f"sends its message, kept with the recent failures, again to "
            f"queue {failure['queue']!r}",
        }
    elif status == states.FAILURE:
        retry = {
            "possible": False,
            "how": None,
            "reason": "its arguments are not known here: neither a dead letter nor "
            "the recent failures keep its message",
        }
    else:
        retry = {
            "possible": False,
            "how": None,
            "reason": "only failed tasks with a dead letter can be retried",
        }
    failed = status in (states.FAILURE, states.RETRY) and "exc_type" in (doc or {})
    exc_type = (doc or {}).get("exc_type")
    if (doc or {}).get("exc_module") not in (None, "builtins"):
        exc_type = f"{doc['exc_module']}.{exc_type}"  # type: ignore[index]
    return {
        "id": task_id,
        "known": doc is not None or running is not None or dead is not None or failure is not None,
        "results_enabled": state.backend is not None,
        "status": status,
        "ready": status in states.READY_STATES,
        "name": (doc or {}).get("task")
        or (running or {}).get("task")
        or (dead or {}).get("task")
        or (failure or {}).get("task")
        or None,
        "result": None if failed or meta is None else preview(meta),
        "exception": f"{exc_type}: {doc.get('exc_message')}" if failed and doc else None,
        "traceback": (doc or {}).get("traceback") or (dead or {}).get("traceback") or None,
        "reason": (doc or {}).get("reason"),
        "date_done": (doc or {}).get("date_done") if status in states.READY_STATES else None,
        "progress": progress(status, meta),
        "running": running,
        "dead": dead,
        "failure": failure,
        "message": message,
        "args": preview(list(message.args)) if message else None,
        "kwargs": preview(message.kwargs) if message else None,
        "call": call_preview(message.args, message.kwargs)
        if message
        else (running or {}).get("args"),
        "retry": retry,
    }


# -- periodic tasks -------------------------------------------------------------------------
def periodic(state: AppState) -> dict[str, Any] | None:
    """Beat's entries with last and next run, and the leader; None without Redis."""
    if state.is_memory:
        return None
    return read_schedule(state.app)


# -- actions --------------------------------------------------------------------------------
def requeue_dead(state: AppState, queue: str, entry_ids: Sequence[str]) -> int:
    """Send dead letters back to their queue (forgetting their old result); return how
    many moved."""
    return state.requeue_dead(queue, list(entry_ids))


def requeue_all_dead(state: AppState, queue: str) -> int:
    """Send every dead letter of ``queue`` back to it; return how many moved."""
    moved = 0
    while True:
        rows = state.broker.dead_letters(queue, PAGE)
        if not rows:
            return moved
        done = requeue_dead(state, queue, [str(r["entry_id"]) for r in rows])
        moved += done
        if not done:
            return moved


def delete_dead(state: AppState, queue: str, entry_id: str) -> int:
    """Delete one dead letter; return how many were deleted (0 or 1)."""
    return state.broker.delete_dead(queue, [entry_id])
