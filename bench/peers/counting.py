"""The one counting method every system's tasks use (see bench/README.md).

A drain is counted in the worker process's memory: each run of ``noop`` / ``noop_result``
takes ``time.time()`` and bumps a per-process counter under a lock (Dramatiq runs tasks in
threads). A daemon thread in each worker process copies the counter and the times of the
process's first and latest run to a Redis hash every FLUSH_EVERY seconds, so no task pays
a round trip. The benchmark sums the counters of all worker processes; once they reach N,
rate = N / (latest last - earliest first), as in SPEC section 8. With one process this is
the same as bench/app.py's "SET at run 1 and at run N".

``BENCH_TARGET`` (optional) also records the time of the process's run number TARGET, for
bench/scaling.py, which stops the worker after TARGET of a longer queue.

Start gate: with ``BENCH_PROCS`` > 1 worker processes, the first run in each process waits
until every process has reached its first run, so that a worker that starts up late does
not leave the others to drain alone. Runs before the gate opens do not exist (the clock
starts after it). With one process the gate is a single SADD.

``stamp(sent)`` pushes ``time.time() - sent`` to a Redis list, as bench/app.py does.
"""

from __future__ import annotations

import os
import threading
import time

import redis

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Set by bench/rabbitmq.py: the systems that can use RabbitMQ as their broker do.
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "")
KEY = "bench:count"  # hash: <pid> -> "n first last target_time"
GATE_KEY = "bench:gate"  # set of pids that reached their first run
LATENCY_KEY = "bench:latency"
PROCS = int(os.environ.get("BENCH_PROCS", "1"))
TARGET = int(os.environ.get("BENCH_TARGET", "0"))
FLUSH_EVERY = 0.005

_lock = threading.Lock()
_gate = threading.Event()
_state = {"pid": 0, "n": 0, "first": 0.0, "last": 0.0, "target": 0.0}
_clients: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    """One client per process (forking pools get a fresh one in the child)."""
    pid = os.getpid()
    c = _clients.get(pid)
    if c is None:
        c = _clients[pid] = redis.Redis.from_url(URL)
    return c


def _flusher(pid: int) -> None:
    sent = None
    r = client()
    while True:
        time.sleep(FLUSH_EVERY)
        with _lock:
            now = (_state["n"], _state["first"], _state["last"], _state["target"])
        if now != sent:
            r.hset(KEY, str(pid), " ".join(repr(x) for x in now))
            sent = now


def _open_gate() -> None:
    with _lock:
        if _gate.is_set() or _state["pid"] == os.getpid():
            pass
        else:
            _state.update(pid=os.getpid(), n=0, first=0.0, last=0.0, target=0.0)
            threading.Thread(target=_flusher, args=(os.getpid(),), daemon=True).start()
            r = client()
            r.sadd(GATE_KEY, os.getpid())
            while r.scard(GATE_KEY) < PROCS:
                time.sleep(0.001)
            _gate.set()
    _gate.wait()


def count() -> None:
    """Call once per run of a counted task."""
    if not _gate.is_set():
        _open_gate()
    now = time.time()
    with _lock:
        n = _state["n"] = _state["n"] + 1
        if n == 1:
            _state["first"] = now
        if now > _state["last"]:
            _state["last"] = now
        if n == TARGET:
            _state["target"] = now


def stamp(sent: float) -> None:
    """Record how long ago ``sent`` (the producer's ``time.time()``) was."""
    client().rpush(LATENCY_KEY, time.time() - sent)


def read(r: redis.Redis) -> list[tuple[int, float, float, float]]:
    """Per worker process: (runs, first, last, time of run TARGET or 0)."""
    rows = []
    for value in r.hgetall(KEY).values():
        n, first, last, target = value.decode().split()
        rows.append((int(n), float(first), float(last), float(target)))
    return rows
