"""The app the benchmark runs workers for (``flask --app bench.app:create_app``).

Every key lives under ``taskqbench:`` (also the app's TASKQ_KEY_PREFIX), so a run against a
shared Redis given by TASKQ_BROKER_URL touches nothing else.

``noop`` and ``noop_result`` count their runs in process memory (the drain figures use
one solo worker process per run) and write to Redis only twice: the unix time of the first
run (SET NX) and that of run number BENCH_DRAIN_N (SET), so that the benchmark, in another
process, sees the first and last completion without a round trip per task.

``maybe_retry(i)`` counts the same way, but only when it succeeds: for even ``i`` its first
attempt raises ``self.retry(countdown=0)`` and counts nothing, so a retry attempt is never
a completion.

``soak(i, ms)`` (bench/soak.py) counts each start and each run to the end of task ``i`` in
two Redis hashes. With ``BENCH_BEAT_SCHEDULE`` (JSON, bench/beat_failover.py) set, the app
has that beat schedule.
"""

from __future__ import annotations

import json
import os
import time

import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue

PREFIX = "taskqbench"
FIRST_KEY = f"{PREFIX}:bench:first"  # unix time the first noop(_result) ran
LAST_KEY = f"{PREFIX}:bench:last"  # unix time run number BENCH_DRAIN_N ran
LATENCY_KEY = f"{PREFIX}:bench:latency"  # list of enqueue-to-start latencies (seconds)
SOAK_STARTS = f"{PREFIX}:soak:starts"  # hash: soak task number -> times it started
SOAK_RUNS = f"{PREFIX}:soak:runs"  # hash: soak task number -> times it ran to its end
DRAIN_N = int(os.environ.get("BENCH_DRAIN_N", "10000"))

tq = TaskQueue()
_clients: dict[str, redis.Redis] = {}
_runs = 0


def bench_redis(url: str | None = None) -> redis.Redis:
    """One client per URL and process, reused by every task run."""
    url = url or current_app.config["TASKQ_BROKER_URL"]
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url)
    return client


def _count_completion() -> None:
    global _runs
    now = time.time()
    _runs += 1
    if _runs == 1:
        bench_redis().set(FIRST_KEY, now, nx=True)
    if _runs == DRAIN_N:
        bench_redis().set(LAST_KEY, now)


@tq.task(ignore_result=True)
def noop() -> None:
    """Nothing but counting itself; no result is stored."""
    _count_completion()


@tq.task
def noop_result() -> None:
    """The same, with its result (``None``) stored by the worker."""
    _count_completion()


@tq.task(bind=True, ignore_result=True)
def maybe_retry(self, i: int) -> None:
    """Even ``i``: fail the first attempt and retry once at once; then count a completion."""
    if i % 2 == 0 and self.request.retries == 0:
        raise self.retry(countdown=0)
    _count_completion()


@tq.task(ignore_result=True)
def stamp(sent: float) -> None:
    """Record how long ago ``sent`` (the producer's ``time.time()``) was."""
    latency = time.time() - sent
    bench_redis().rpush(LATENCY_KEY, latency)


@tq.task(ignore_result=True)
def soak(i: int, ms: float) -> None:
    """bench/soak.py's task: count a start of task ``i``, sleep ``ms`` milliseconds, count
    a run to the end (one HINCRBY round trip each, in the broker's Redis)."""
    client = bench_redis()
    client.hincrby(SOAK_STARTS, str(i), 1)
    time.sleep(ms / 1000)
    client.hincrby(SOAK_RUNS, str(i), 1)


def create_app() -> Flask:
    app = Flask(__name__)
    if "TASKQ_BROKER_URL" in os.environ:
        app.config["TASKQ_BROKER_URL"] = os.environ["TASKQ_BROKER_URL"]
    if "TASKQ_RESULT_BACKEND" in os.environ:  # bench/sql_results.py
        app.config["TASKQ_RESULT_BACKEND"] = os.environ["TASKQ_RESULT_BACKEND"]
    app.config["TASKQ_KEY_PREFIX"] = PREFIX
    if "BENCH_TRACK_STARTED" in os.environ:  # STARTED on or off (its cost, issue 20)
        app.config["TASKQ_TRACK_STARTED"] = os.environ["BENCH_TRACK_STARTED"] == "1"
    if "BENCH_BEAT_SCHEDULE" in os.environ:  # bench/beat_failover.py
        app.config["TASKQ_BEAT_SCHEDULE"] = json.loads(os.environ["BENCH_BEAT_SCHEDULE"])
    tq.init_app(app)
    return app


# -- workflows (bench/workflows.py) ---------------------------------------------------------
@tq.task
def wf_noop(*args: object) -> None:
    """A chord member or chain link that does nothing; its result (``None``) is stored."""


@tq.task
def wf_count(values: list) -> int:
    """A chord callback: how many values it got."""
    return len(values)
