"""Metrics for Prometheus, read from what workers publish in the store (``monitor.py``).

:func:`exposition` returns the text exposition format: with the optional
``prometheus-client`` package (extra ``metrics``) it is rendered by that library, without it
by :func:`render_text`, to the same text. The dashboard serves it at
``<TASKQ_DASHBOARD_URL_PREFIX>/metrics``; see ``docs/dashboard.rst`` for the metrics.

Workers publish their task counters as per-minute hashes that expire after two hours, so
the per-task counters here are totals kept by this process (:class:`CounterTotals`): the
first scrape counts what those hashes hold, and each later one adds what they gained. A
restart of the web process is a counter reset, which Prometheus' ``rate()`` handles.

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from .backlog import Backlog, read_backlogs
from .monitor import BUCKET_KINDS, BUCKET_LE, STATS_TTL, Monitor

#: The content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Where an app keeps its :class:`CounterTotals` (``app.extensions``).
EXTENSION_KEY = "taskq.metrics"
#: Minutes of per-minute counters the store keeps, all read at each scrape.
WINDOW = STATS_TTL // 60

Labels = tuple[str, ...]
StatKey = tuple[str, str, str]  # (kind, queue, task)


@dataclass
class Family:
    """One metric: ``kind`` is ``gauge``, ``counter`` or ``histogram``. A counter's
    ``name`` has no ``_total`` (it is added when rendered). Each sample is
    ``(label values, value)``; a histogram's value is ``(buckets, count, sum)`` where
    ``buckets`` lists ``(le, cumulative count)`` ending with ``("+Inf", count)``."""

    name: str
    kind: str
    help: str
    labels: Labels = ()
    samples: list[tuple[Labels, Any]] = field(default_factory=list)


class CounterTotals:
    """Turns per-minute counters into totals that never go down.

    Each :meth:`update` gets the per-minute rows of :meth:`Monitor.stats`; a row that
    grew since the last update adds the difference, a row seen for the first time adds
    all of it, and a row that shrank (Redis emptied) counts from zero again.
    """

    def __init__(self) -> None:
        self._seen: dict[int, dict[StatKey, int]] = {}
        self._totals: Counter[StatKey] = Counter()
        self._lock = threading.Lock()

    def update(self, rows: Sequence[dict[str, Any]]) -> dict[StatKey, int]:
        """Add what ``rows`` gained and return the totals."""
        with self._lock:
            for row in rows:
                seen = self._seen.setdefault(row["minute"], {})
                for key, value in row["counts"].items():
                    before = seen.get(key, 0)
                    gained = value - before if value >= before else value
                    if gained:
                        self._totals[key] += gained
                    seen[key] = value
            if rows:
                oldest = rows[0]["minute"]
                for minute in [m for m in self._seen if m < oldest]:
                    del self._seen[minute]
            return dict(self._totals)


def collect(app: Flask | None = None) -> list[Family]:
    """The metrics of ``app`` (default: as in :func:`~flask_taskq.state.resolve_state`)."""
    from .state import resolve_state
    from .worker import default_queues

    state = resolve_state(app)
    monitor = Monitor(state.store.monitor)
    queues = default_queues(state)
    queues += sorted(state.broker.known_queues() - set(queues))
    paused = monitor.paused()
    processes = monitor.processes()
    counters = state.app.extensions.setdefault(EXTENSION_KEY, CounterTotals())
    totals: dict[StatKey, int] = counters.update(monitor.stats(WINDOW))
    queues += [q for q in state.broker.dead_letter_queues() if q not in queues]
    backlogs = read_backlogs(state.broker, queues)
    return [
        Family(
            "taskq_queue_depth",
            "gauge",
            "Messages waiting in the queue, ready to be fetched by a worker "
            "(the same as taskq_queue_ready, kept for existing dashboards).",
            ("queue",),
            [((q,), backlogs[q].ready) for q in queues],
        ),
        *_backlog_families(backlogs),
        Family(
            "taskq_queue_dead_letters",
            "gauge",
            "Messages in the queue's dead-letter store.",
            ("queue",),
            [((q,), state.broker.dead_letter_count(q)) for q in queues],
        ),
        Family(
            "taskq_queue_paused",
            "gauge",
            "1 when workers do not fetch from the queue (paused), else 0.",
            ("queue",),
            [((q,), int(q in paused)) for q in queues],
        ),
        *_task_counters(totals),
        Family(
            "taskq_dead_letters_trimmed",
            "counter",
            "Dead letters deleted, oldest first, to keep the queue's dead-letter store "
            "within TASKQ_DEAD_LETTER_MAX_BYTES (or 100,000 entries).",
            ("queue",),
            sorted(
                ((queue,), value)
                for (kind, queue, _), value in totals.items()
                if kind == "dead_letters_trimmed"
            ),
        ),
        _runtime(totals),
        Family(
            "taskq_workers_alive",
            "gauge",
            "Workers with at least one consuming process sending heartbeats.",
            (),
            [((), len({p.get("worker") for p in processes}))],
        ),
        Family(
            "taskq_worker_processes",
            "gauge",
            "Consuming processes (solo/threads workers, prefork children) alive.",
            (),
            [((), len(processes))],
        ),
        _running(processes),
    ]


#: The backlog gauges: (count, help). ``taskq_queue_<count>`` per queue (a sharded queue's
#: totals) and ``taskq_queue_shard_<count>`` per shard of a sharded queue.
BACKLOG_GAUGES = (
    ("ready", "Messages ready to be fetched by a worker."),
    (
        "reserved",
        "Messages delivered to a worker and not yet acknowledged (prefetched or running).",
    ),
    ("delayed", "Messages waiting for their countdown, ETA or retry delay."),
    ("backlog", "Messages sent and not finished: ready + reserved + delayed (scale on this)."),
)


def _backlog_families(backlogs: dict[str, Backlog]) -> list[Family]:
    out = []
    for count, text in BACKLOG_GAUGES:
        out.append(
            Family(
                f"taskq_queue_{count}",
                "gauge",
                text,
                ("queue",),
                [((q,), getattr(b, count)) for q, b in backlogs.items()],
            )
        )
    for count, text in BACKLOG_GAUGES:
        out.append(
            Family(
                f"taskq_queue_shard_{count}",
                "gauge",
                f"Per shard of a sharded queue (TASKQ_QUEUE_SHARDS): {text[0].lower()}{text[1:]}",
                ("queue", "shard"),
                [((q, s.name), getattr(s, count)) for q, b in backlogs.items() for s in b.shards],
            )
        )
    return out


def _task_counters(totals: dict[StatKey, int]) -> list[Family]:
    out = []
    for kind, text in (
        ("processed", "Tasks that finished without failing (succeeded or revoked)."),
        ("failed", "Tasks that failed."),
        ("retried", "Task runs that ended in a retry."),
    ):
        samples = sorted(
            ((queue, task), value) for (k, queue, task), value in totals.items() if k == kind
        )
        out.append(Family(f"taskq_tasks_{kind}", "counter", text, ("queue", "task"), list(samples)))
    return out


def _runtime(totals: dict[StatKey, int]) -> Family:
    """The run-time histogram. Workers count each run in one bucket (``rt_le_<bound>``,
    see :func:`~flask_taskq.monitor.runtime_bucket`); the buckets here are cumulative.
    Runs counted by workers that predate the buckets (no bucket counter for that queue and
    task) show in the ``+Inf`` bucket only."""
    runs: Counter[tuple[str, str]] = Counter()
    seconds: dict[tuple[str, str], float] = {}
    buckets: dict[tuple[str, str], Counter[str]] = {}
    for (kind, queue, task), value in totals.items():
        if kind == "runtime_ms":
            seconds[(queue, task)] = seconds.get((queue, task), 0.0) + value / 1000
        elif kind in BUCKET_LE:
            buckets.setdefault((queue, task), Counter())[kind] += value
        elif kind in ("processed", "failed", "retried"):
            runs[(queue, task)] += value
    samples: list[tuple[Labels, Any]] = []
    for labels in sorted({*runs, *seconds, *buckets}):
        per_bucket = buckets.get(labels)
        spent = seconds.get(labels, 0.0)
        if per_bucket is None:
            samples.append((labels, ([("+Inf", runs[labels])], runs[labels], spent)))
            continue
        cumulative: list[tuple[str, int]] = []
        total = 0
        for kind in BUCKET_KINDS:
            total += per_bucket[kind]
            cumulative.append((BUCKET_LE[kind], total))
        samples.append((labels, (cumulative, total, spent)))
    return Family(
        "taskq_task_runtime_seconds",
        "histogram",
        "Time tasks ran, in seconds.",
        ("queue", "task"),
        samples,
    )


def _running(processes: Iterable[dict[str, Any]]) -> Family:
    running: Counter[str] = Counter()
    for process in processes:
        for task in process.get("running") or ():
            running[str(task.get("task"))] += 1
    return Family(
        "taskq_tasks_running",
        "gauge",
        "Tasks running now, by task.",
        ("task",),
        [((task,), n) for task, n in sorted(running.items())],
    )


# -- the text format -----------------------------------------------------------------------
def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _sample(name: str, names: Sequence[str], values: Sequence[str], value: float) -> str:
    if not names:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return f"{name}{{{pairs}}} {_number(value)}"


def render_text(families: Iterable[Family]) -> str:
    """The families in the Prometheus text exposition format (version 0.0.4)."""
    lines = []
    for fam in families:
        name = f"{fam.name}_total" if fam.kind == "counter" else fam.name
        lines.append(f"# HELP {name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {name} {fam.kind}")
        for labels, value in fam.samples:
            if fam.kind == "histogram":
                buckets, count, total = value
                for le, cumulative in buckets:
                    lines.append(
                        _sample(f"{name}_bucket", (*fam.labels, "le"), (*labels, le), cumulative)
                    )
                lines.append(_sample(f"{name}_count", fam.labels, labels, count))
                lines.append(_sample(f"{name}_sum", fam.labels, labels, total))
            else:
                lines.append(_sample(name, fam.labels, labels, value))
    return "\n".join(lines) + "\n"


def _render_with_client(families: list[Family]) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    class Collector:
        def collect(self) -> Iterable[Any]:
            for fam in families:
                labels = list(fam.labels)
                if fam.kind == "counter":
                    metric: Any = CounterMetricFamily(fam.name, fam.help, labels=labels)
                    for values, value in fam.samples:
                        metric.add_metric(list(values), value)
                elif fam.kind == "histogram":
                    metric = HistogramMetricFamily(fam.name, fam.help, labels=labels)
                    for values, (buckets, _, total) in fam.samples:
                        metric.add_metric(list(values), buckets, total)
                else:
                    metric = GaugeMetricFamily(fam.name, fam.help, labels=labels)
                    for values, value in fam.samples:
                        metric.add_metric(list(values), value)
                yield metric

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


def exposition(app: Flask | None = None, use_client: bool | None = None) -> tuple[bytes, str]:
    """``(body, content type)`` of ``app``'s metrics. ``use_client`` chooses the renderer:
    ``prometheus_client`` (True), the built-in one (False), or the former when it is
    installed (None)."""
    families = collect(app)
    if use_client is None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            use_client = False
        else:
            use_client = True
    if use_client:
        from prometheus_client import CONTENT_TYPE_LATEST

        return _render_with_client(families), CONTENT_TYPE_LATEST
    return render_text(families).encode(), CONTENT_TYPE
