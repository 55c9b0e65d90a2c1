"""The ceiling: raw redis-py loops doing the least a Redis Streams queue must do.

    <python> -m bench.peers.ceiling MEASURE [--n N] [--task default|ignored|stored] ...

Run by bench/compare.py beside the systems' drivers, on the same private Redis
(BENCH_REDIS_URL, flushed before and after) and with the same CPU placement, and prints
one JSON line as bench.peers.driver does. No queue library: one ``redis.Connection``
kept open, commands packed by redis-py and replies parsed by hiredis, and a fixed JSON
body of the size of a flask-taskq envelope (about 200 bytes) in a field ``m``.

MEASURE is one of
  enqueue   N single ``XADD`` round trips after 200 warm-up ones: N / loop time.
  bulk      N ``XADD``s pipelined 1,000 per round trip (as ``delay_many``): N / time.
  drain     N entries added (untimed) to a stream with a consumer group; then a loop of
            ``XREADGROUP COUNT 64``, ``json.loads`` of every body, and one pipelined
            ``XACK`` + ``XDEL`` of the batch: N / (time of the last ack reply - time of
            the first read reply). ``--task stored`` adds a ``SET <id> <result> EX 86400``
            per task to the ack pipeline (what storing a result needs at least).
  latency   a consumer process on the worker's CPU blocks in ``XREADGROUP BLOCK`` and
            reads each entry's ``time.time()`` at its arrival, while this process, on
            the side CPU, ``XADD``s one entry every 1/R s for S s (``--rate R --seconds
            S``): p50 and p99 of arrival - send, the floor under every start latency
            (a worker also decodes the message and calls the task).
  memory    Redis memory per queued entry (N ``XADD`` after one) and per stored result
            (N ``SET ... EX`` of a 60-byte JSON value under a 40-byte key); and, as the
            value, the import floor of ``rss-floor``, the idle RSS row's ceiling.
  rss-floor The least an idle worker of a Flask app on Redis holds: the ``VmRSS`` (MiB)
            of a fresh process of this interpreter that imports ``flask`` and ``redis``
            (which loads hiredis when installed), opens one connection (``PING``) and
            waits. ``otel_blocked_mib``: the same with the OpenTelemetry SDK kept out
            (``sys.modules["opentelemetry"] = None``), which redis-py 8 otherwise imports
            whenever it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.peers.driver import cpus_arg, percentile, place, used_memory  # noqa: E402

STREAM, GROUP, CONSUMER = "ceiling:stream", "workers", "c1"
CHUNK, BATCH = 1000, 64
BODY = json.dumps(
    {
        "v": 1,
        "id": "b5902e9c-18d4-4d56-9e6a-4d0c7e60dfb4",
        "task": "bench.peers.taskq_app.noop",
        "args": [],
        "kwargs": {},
        "queue": "default",
        "priority": 5,
        "eta": None,
        "expires": None,
        "retries": 0,
        "headers": {},
        "sent": 1796523465.0387528,
    },
    separators=(",", ":"),
).encode()
RESULT = b'{"status":"SUCCESS","result":null,"date_done":1796523465.04}'


def connection(url: str) -> redis.Connection:
    pool = redis.ConnectionPool.from_url(url)
    conn = pool.make_connection()
    conn.connect()
    return conn


def xadd(conn: redis.Connection) -> None:
    conn.send_packed_command(conn.pack_command("XADD", STREAM, "*", "m", BODY), False)
    conn.read_response()


def xadd_many(conn: redis.Connection, n: int) -> None:
    for i in range(0, n, CHUNK):
        k = min(CHUNK, n - i)
        conn.send_packed_command(conn.pack_commands([("XADD", STREAM, "*", "m", BODY)] * k), False)
        for _ in range(k):
            conn.read_response()


def measure_enqueue(conn: redis.Connection, n: int) -> dict:
    for _ in range(200):
        xadd(conn)
    start = time.perf_counter()
    for _ in range(n):
        xadd(conn)
    return {"value": n / (time.perf_counter() - start), "unit": "/s"}


def measure_bulk(conn: redis.Connection, n: int) -> dict:
    for _ in range(200):
        xadd(conn)
    start = time.perf_counter()
    xadd_many(conn, n)
    return {"value": n / (time.perf_counter() - start), "unit": "/s"}


def measure_drain(conn: redis.Connection, n: int, store: bool, cpu: int | None) -> dict:
    xadd_many(conn, n)
    conn.send_command("XGROUP", "CREATE", STREAM, GROUP, "0")
    conn.read_response()
    place(cpu)
    read = conn.pack_command(
        "XREADGROUP", "GROUP", GROUP, CONSUMER, "COUNT", BATCH, "STREAMS", STREAM, ">"
    )
    done, first = 0, 0.0
    while done < n:
        conn.send_packed_command(read, False)
        reply = conn.read_response()
        if not reply:
            return {"value": None, "error": f"the stream ran dry after {done} of {n}"}
        if not first:
            first = time.perf_counter()
        # RESP3 (redis-py 8's default) answers {stream: entries}, RESP2 [[stream, entries]].
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        ids = []
        commands: list[tuple] = []
        for entry_id, fields in entries:  # fields: [b"m", body] (no response callbacks)
            json.loads(fields[1])
            ids.append(entry_id)
            if store:  # the body's id is the same in every entry: key by entry id
                commands.append(("SET", b"r:" + entry_id, RESULT, "EX", 86400))
        commands.append(("XACK", STREAM, GROUP, *ids))
        commands.append(("XDEL", STREAM, *ids))
        conn.send_packed_command(conn.pack_commands(commands), False)
        for _ in commands:
            conn.read_response()
        done += len(entries)
    return {"value": n / (time.perf_counter() - first), "unit": "/s"}


LATENCY_KEY = "ceiling:latency"
CONSUMER_CODE = """
import json, sys, time, redis
r = redis.Redis.from_url(sys.argv[1])
stream, group, key, count = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
print("ready", flush=True)
seen = 0
while seen < count:
    reply = r.xreadgroup(group, "c1", {stream: ">"}, count=64, block=1000)
    now = time.time()
    late = [now - float(f[b"m"]) for _, entries in reply or [] for _, f in entries]
    if late:
        r.rpush(key, *late)
        r.xack(stream, group, *[i for _, entries in reply for i, _ in entries])
        seen += len(late)
"""


def measure_latency(
    conn: redis.Connection, r: redis.Redis, url: str, rate: float, seconds: float, args
) -> dict:
    count = int(rate * seconds)
    conn.send_command("XGROUP", "CREATE", STREAM, GROUP, "$", "MKSTREAM")
    conn.read_response()
    cpu = args.worker_cpus[0] if args.worker_cpus else None
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER_CODE, url, STREAM, GROUP, LATENCY_KEY, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: place(cpu)) if cpu is not None else None,
    )
    try:
        assert consumer.stdout is not None
        consumer.stdout.readline()  # "ready": it is about to block
        place(args.side_cpu)
        time.sleep(0.2)
        start = time.perf_counter()
        for i in range(count):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            conn.send_packed_command(
                conn.pack_command("XADD", STREAM, "*", "m", repr(time.time())), False
            )
            conn.read_response()
        consumer.wait(args.timeout)
        samples = sorted(float(x) for x in r.lrange(LATENCY_KEY, 0, -1))
        if len(samples) < count:
            return {"value": None, "error": f"{len(samples)}/{count} arrived"}
        return {
            "value": percentile(samples, 50),
            "p99": percentile(samples, 99),
            "unit": "s",
        }
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()


def measure_memory(conn: redis.Connection, r: redis.Redis, n: int) -> dict:
    xadd(conn)
    time.sleep(0.2)
    before = used_memory(r)
    xadd_many(conn, n)
    time.sleep(0.2)
    queued = used_memory(r)
    for i in range(0, n, CHUNK):
        keys = [f"r:{os.urandom(16).hex()}{j:04d}" for j in range(min(CHUNK, n - i))]
        conn.send_packed_command(
            conn.pack_commands([("SET", key, RESULT, "EX", 86400) for key in keys]), False
        )
        for _ in keys:
            conn.read_response()
    time.sleep(0.2)
    stored = used_memory(r)
    return {
        "value": None,
        "queued_bytes": (queued - before) / n,
        "result_bytes": (stored - queued) / n,
    }


FLOOR_CODE = """
import os, sys
if sys.argv[1] == "block-otel":
    sys.modules["opentelemetry"] = None
import flask, redis
redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]).ping()
print(int("opentelemetry.sdk" in sys.modules), int("hiredis" in sys.modules), flush=True)
sys.stdin.read()
"""


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


def floor_rss(block_otel: bool, cpu: int | None) -> tuple[float, bool, bool]:
    """(VmRSS in MiB, OpenTelemetry SDK loaded, hiredis loaded) of one floor process,
    read from outside once it is connected and waiting, as the driver reads a worker's."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOR_CODE, "block-otel" if block_otel else "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: place(cpu)) if cpu is not None else None,
    )
    try:
        assert proc.stdout is not None
        otel, hiredis = proc.stdout.readline().split()
        time.sleep(0.5)
        return vm_rss_kib(proc.pid) / 1024, otel == "1", hiredis == "1"
    finally:
        proc.kill()
        proc.wait()


def measure_rss_floor(cpu: int | None) -> dict:
    rss, otel, hiredis = floor_rss(False, cpu)
    blocked, _, _ = floor_rss(True, cpu)
    return {
        "value": rss,
        "unit": "MiB",
        "otel_blocked_mib": blocked,
        "otel_sdk": otel,
        "hiredis": hiredis,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "measure", choices=("enqueue", "bulk", "drain", "latency", "memory", "rss-floor")
    )
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--task", choices=("default", "ignored", "stored"), default="ignored")
    parser.add_argument("--producer-cpu", type=int)
    parser.add_argument("--side-cpu", type=int)
    parser.add_argument("--worker-cpus", type=cpus_arg)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    url = os.environ["BENCH_REDIS_URL"]
    r = redis.Redis.from_url(url)
    r.flushdb()
    place(args.producer_cpu)
    out: dict = {"system": "ceiling", "measure": args.measure}
    conn = connection(url)
    try:
        if args.measure == "enqueue":
            out.update(measure_enqueue(conn, args.n))
        elif args.measure == "bulk":
            out.update(measure_bulk(conn, args.n))
        elif args.measure == "drain":
            cpu = args.worker_cpus[0] if args.worker_cpus else None
            out.update(measure_drain(conn, args.n, args.task == "stored", cpu))
        elif args.measure == "latency":
            out.update(measure_latency(conn, r, url, args.rate, args.seconds, args))
        elif args.measure == "memory":
            out.update(measure_memory(conn, r, args.n))
            out.update(measure_rss_floor(args.worker_cpus[0] if args.worker_cpus else None))
        else:
            out.update(measure_rss_floor(args.worker_cpus[0] if args.worker_cpus else None))
    except Exception as exc:  # fail soft, as the driver does
        out.update(value=None, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.disconnect()
        with contextlib.suppress(Exception):
            r.flushdb()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
