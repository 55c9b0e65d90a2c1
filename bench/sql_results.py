"""Drain with results stored in PostgreSQL vs in Redis (issue 18). Run from the
repository root:

    .venv/bin/python bench/sql_results.py

It starts a private redis-server (the broker in both cases, and the result store in the
Redis case) and creates a database ``taskqbench_<random>`` on the PostgreSQL server at
``BENCH_PG_SERVER`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``), dropped at
the end. Needs ``pip install flask-taskq[sql] psycopg[binary]``.

For each store, N messages of ``bench.app.noop_result`` (its result, ``None``, is stored)
are enqueued before one ``flask taskq worker -P solo`` process starts. Two rates:

drain (completions)
    N / (time of run N - time of run 1), as ``bench/throughput.py`` counts it (SPEC 8).
drain until stored
    N / (time every message was acked - time of run 1). A message is acked after its
    result was written, so this includes the last batch of result writes; the time is
    taken by polling the stream every 10 ms.

The median (min-max) over RUNS runs is printed for both stores, and the ratio of
the medians. It prints numbers
only and checks nothing. ``BENCH_N`` and ``BENCH_RUNS`` override N and RUNS.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import app as bench_app  # noqa: E402
from bench.common import start_redis, wait_for  # noqa: E402
from flask_taskq import Message  # noqa: E402

N = int(os.environ.get("BENCH_N", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
DRAIN_TIMEOUT = 300.0


def reset(r: redis.Redis) -> None:
    """Delete every benchmark key (queues, results, counters)."""
    keys = list(r.scan_iter(match=f"{bench_app.PREFIX}:*", count=1000))
    for i in range(0, len(keys), 1000):
        r.unlink(*keys[i : i + 1000])


def start_worker(broker: str, results: str) -> tuple[subprocess.Popen[bytes], object]:
    """One ``flask taskq worker -P solo`` of bench.app; its output goes to a temp file."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop_worker())
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": broker,
        "TASKQ_RESULT_BACKEND": results,
        "BENCH_DRAIN_N": str(N),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    args = ["-m", "flask", "--app", "bench.app:create_app", "taskq", "worker", "-P", "solo"]
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


def stop_worker(proc: subprocess.Popen[bytes], log: object) -> None:
    """SIGTERM, then wait for a graceful exit (SIGKILL after 40 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()  # type: ignore[attr-defined]


def tail(log: object, lines: int = 15) -> str:
    log.seek(0)  # type: ignore[attr-defined]
    text = log.read().decode(errors="replace")  # type: ignore[attr-defined]
    return "\n".join(text.splitlines()[-lines:])


def measure(broker: str, results: str) -> tuple[float, float] | None:
    """(completions /s, until stored /s) of one drain of N ``noop_result`` messages."""
    os.environ["TASKQ_BROKER_URL"] = broker
    os.environ["TASKQ_RESULT_BACKEND"] = results
    app = bench_app.create_app()
    state = app.extensions["taskq"]
    r = bench_app.bench_redis(broker)
    reset(r)
    queue = state.default_queue
    bodies = [
        Message(
            id=str(uuid.uuid4()), task=bench_app.noop_result.name, queue=queue, sent=time.time()
        ).to_bytes(state.serializer)
        for _ in range(N)
    ]
    state.broker.enqueue_many((queue, 5, body, None) for body in bodies)
    stream = state.broker.keys.stream(queue, 5)
    proc, log = start_worker(broker, results)
    try:
        acked = wait_for(
            lambda: (
                (r.xlen(stream) == 0 and r.exists(bench_app.LAST_KEY) and time.time())
                or proc.poll() is not None
            ),
            DRAIN_TIMEOUT,
            0.01,
        )
        first, last = r.mget(bench_app.FIRST_KEY, bench_app.LAST_KEY)
        if last is None or acked is True or acked is None:
            print(f"    no figure: the worker exited or timed out. Worker log:\n{tail(log)}")
            return None
        return N / (float(last) - float(first)), N / (float(acked) - float(first))
    finally:
        stop_worker(proc, log)
        reset(r)
        if state.backend is not None:
            state.backend.close()


def main() -> None:
    import sqlalchemy as sa

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally blocks run
    server, broker = start_redis()
    name = f"taskqbench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
            version = conn.exec_driver_sql("SHOW server_version").scalar()
        pg = f"{PG_SERVER}/{name}"
        from flask_taskq.backend.sql import SQLBackend

        tables = SQLBackend(pg)
        tables.create_tables()
        print(
            f"flask-taskq SQL results bench: N={N:,} runs={RUNS} python "
            f"{sys.version.split()[0]} postgresql {version} cpus={os.cpu_count()}"
        )
        figures: dict[str, list[tuple[float, float]]] = {"redis": [], "postgresql": []}
        for run in range(1, RUNS + 1):
            print(f"run {run}/{RUNS}", flush=True)
            for store, url in (("redis", broker), ("postgresql", pg)):
                got = measure(broker, url)
                if got is not None:
                    figures[store].append(got)
                    print(f"  {store:<10} {got[0]:>8,.0f} /s  until stored {got[1]:>8,.0f} /s")
                if store == "postgresql":
                    with tables.engine.begin() as conn:
                        conn.exec_driver_sql("TRUNCATE taskq_result")
        tables.close()
        print()
        medians = {}
        for store, values in figures.items():
            if not values:
                print(f"{store:<10} n/a")
                continue
            medians[store] = tuple(statistics.median(v[i] for v in values) for i in (0, 1))
            shown = [
                f"{medians[store][i]:>7,.0f} ({min(v[i] for v in values):,.0f}-"
                f"{max(v[i] for v in values):,.0f}) /s"
                for i in (0, 1)
            ]
            print(
                f"results in {store:<10}  drain {shown[0]}   until stored {shown[1]}"
                f"   ({len(values)} run(s))"
            )
        if len(medians) == 2:
            for i, what in ((0, "drain"), (1, "until stored")):
                ratio = medians["postgresql"][i] / medians["redis"][i]
                print(f"ratio postgresql / redis, {what}: {ratio:.2f}")
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
