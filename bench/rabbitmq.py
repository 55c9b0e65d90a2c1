"""flask-taskq and Celery, each on Redis and on RabbitMQ (issue 16). From the repo root:

    .venv/bin/python bench/rabbitmq.py [--n 2000] [--runs 1] [--no-write]
        [--only drain] [--systems ours]

Runs bench/peers/driver.py (the same measurements as bench/compare.py) for ``ours`` and
``celery`` twice: with the private Redis as the broker, and with RabbitMQ on
127.0.0.1:5672 (guest/guest; a fresh vhost per measurement, created and deleted with
``rabbitmqctl``) as the broker and the Redis for the rest (our store, Celery's result
backend). flask-taskq on RabbitMQ is measured twice, with classic queues and with quorum
queues (``TASKQ_AMQP_QUEUE_TYPE``), in the same run. Writes the table to
docs/performance.md between the rabbitmq marker comments. bench/compare.py has the
RabbitMQ rows of the main comparison (classic queues); this script is the one that sets
classic against quorum queues.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import start_redis  # noqa: E402
from bench.compare import DOC, ensure_peers_venv, log, replace_section, run_driver  # noqa: E402

BEGIN, END = "<!-- rabbitmq:begin -->", "<!-- rabbitmq:end -->"
SYSTEMS = ("ours", "celery")
BROKERS = ("redis", "rabbitmq", "rabbitmq-quorum")
#: Who is measured on which broker (Celery has no quorum-queue priorities to compare).
PAIRS = [("ours", "redis"), ("celery", "redis"), ("ours", "rabbitmq"), ("celery", "rabbitmq")]
PAIRS.append(("ours", "rabbitmq-quorum"))
AMQP = "amqp://guest:guest@127.0.0.1:5672/{vhost}"
NOTE = """\
Where flask-taskq on RabbitMQ is behind Celery on RabbitMQ, it is the guarantee: a
single `.delay()` returns only once RabbitMQ confirmed the persistent message (a round
trip and RabbitMQ's disk write per call), where Celery's default (kombu without
`confirm_publish`) returns once the bytes are written to the socket and may lose the message
if RabbitMQ fails just then. Bulk sends commit one AMQP transaction per batch and are ahead.
The start latency has one more thread hop than Celery's (pika's connection is owned by an
I/O thread that hands deliveries to the executor). Not done yet: publishing single sends
of several threads in one confirm batch, which would close most of the enqueue gap."""


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def measure(python: Path, system: str, broker: str, what: str, extra: list[str], url: str) -> dict:
    """One driver run; on RabbitMQ in a vhost of its own."""
    if broker == "redis":
        os.environ.pop("BENCH_AMQP_URL", None)
        return run_driver(python, system, what, extra, url, 600)
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        os.environ["BENCH_AMQP_URL"] = AMQP.format(vhost=vhost)
        os.environ["BENCH_AMQP_QUEUE_TYPE"] = "quorum" if broker.endswith("quorum") else "classic"
        return run_driver(python, system, what, extra, url, 600)
    finally:
        os.environ.pop("BENCH_AMQP_URL", None)
        os.environ.pop("BENCH_AMQP_QUEUE_TYPE", None)
        _ctl("delete_vhost", vhost)


def _label(broker: str) -> str:
    return "rabbitmq (quorum)" if broker == "rabbitmq-quorum" else broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--only", help="measure only the rows of this kind (e.g. drain)")
    parser.add_argument("--systems", default="ours,celery", help="comma-separated")
    args = parser.parse_args()
    wanted = set(args.systems.split(","))
    peers, why = ensure_peers_venv() if "celery" in wanted else (None, "not asked for")
    pythons = {"ours": Path(sys.executable), "celery": peers}
    n = ["--n", str(args.n)]
    rows = [
        ("enqueue, single call (/s)", "enqueue", n, "value", 1.0, ",.0f"),
        ("enqueue, bulk API (/s)", "bulk", n, "value", 1.0, ",.0f"),
        ("drain, 1 worker process (/s)", "drain", n, "value", 1.0, ",.0f"),
        ("drain, 2 worker processes (/s)", "drain", [*n, "--procs", "2"], "value", 1.0, ",.0f"),
        (
            f"start latency p50 @{args.rate}/s (ms)",
            "latency",
            ["--rate", str(args.rate), "--seconds", str(args.seconds)],
            "value",
            1000.0,
            ",.2f",
        ),
    ]
    if args.only:
        rows = [row for row in rows if row[1] == args.only]
    columns = [(s, b) for b in BROKERS for s in SYSTEMS if (s, b) in PAIRS and s in wanted]
    server, url = start_redis()
    table: dict[tuple[str, str, str], list[float]] = {}
    notes: dict[tuple[str, str, str], str] = {}
    try:
        for _ in range(args.runs):
            for label, what, extra, key, scale, _fmt in rows:
                for system, broker in columns:
                    python = pythons[system]
                    if python is None:
                        notes[(label, system, broker)] = why
                        continue
                    log(f"{system} on {broker}: {label}")
                    out = measure(python, system, broker, what, extra, url)
                    value = out.get(key)
                    if value is None:
                        notes[(label, system, broker)] = str(out.get("error", "no figure"))
                        log("   ", notes[(label, system, broker)])
                    else:
                        table.setdefault((label, system, broker), []).append(value * scale)
    finally:
        server.kill()
        server.wait()
    header = [
        "",
        *(f"{'flask-taskq' if s == 'ours' else 'Celery'} on {_label(b)}" for s, b in columns),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, _what, _extra, _key, _scale, fmt in rows:
        cells = [label]
        for system, broker in columns:
            got = table.get((label, system, broker))
            if got:
                cells.append(f"{statistics.median(got):{fmt}}")
            else:
                reason = notes.get((label, system, broker), "not run")
                cells.append(f"no figure ({reason[:60]})")
        lines.append("| " + " | ".join(cells) + " |")
    body = "\n".join(
        [
            "## On RabbitMQ",
            "",
            f"`bench/rabbitmq.py --n {args.n} --runs {args.runs}` on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}; RabbitMQ on the same "
            "machine (durable classic queues unless marked quorum, persistent messages; our "
            "enqueue waits for the publisher confirm, Celery's for the write). Medians; a "
            "shared machine, so "
            "compare columns of one run rather than runs.",
            "",
            *lines,
            "",
            NOTE,
        ]
    )
    print(body)
    if not args.no_write:
        replace_section(DOC, BEGIN, END, body, "")


if __name__ == "__main__":
    main()
