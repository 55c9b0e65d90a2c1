"""A worker host cut off from Redis for longer than the visibility timeout, then healed
(issue 15, item 6a), on simulated hosts: Redis, the cut-off worker and the rest (this test
process, which sends, and a second worker) each in their own network namespace
(tests/netns.py).

What must hold: the other worker takes the cut-off worker's tasks over and runs them all;
the cut-off worker notices that it lost its leases (it logs it, gives up the tasks it had
not started, and does not acknowledge or dead-letter what it no longer owns); once the
link is back it goes on taking work, without a restart.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import redis

from tests import netns
from tests.conftest import WorkerProcess, free_port, redis_argv, wait_until

WHY_NOT = netns.unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

VISIBILITY_TIMEOUT = 3.0


@pytest.fixture
def network() -> Iterator[netns.Network]:
    net = netns.Network()
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill_group()


def _worker(host: netns.Host | None, url: str, *args: str) -> WorkerProcess:
    argv = [sys.executable, "-m", "flask", "--app", "tests.apps.basic:create_app"]
    argv += ["taskq", "worker", "-l", "info", "-P", "threads", *args]
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": url,
        "TASKQ_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "PYTHONUNBUFFERED": "1",
    }
    return WorkerProcess(host.command(argv) if host else argv, env)


def test_a_partitioned_worker_loses_its_leases_and_carries_on_after_the_heal(
    network: netns.Network,
    processes: list[WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_host, worker_host = network.host("redis"), network.host("worker")
    port = free_port()
    server = WorkerProcess(  # not a worker, but its output is kept the same way
        redis_host.command(redis_argv(port, "--protected-mode", "no", bind=redis_host.address)),
        dict(os.environ),
    )
    processes.append(server)
    url = f"redis://{redis_host.address}:{port}/0"
    r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    wait_until(lambda: _pings(r), message="redis-server on its host")

    monkeypatch.setenv("TASKQ_BROKER_URL", url)
    from tests.apps.basic import create_app, mark, noop

    app = create_app()
    cut_off = _worker(worker_host, url, "-c", "2", "-Q", "default,cutoff", "-n", "cutoff@%h")
    processes.append(cut_off)
    cut_off.wait_for_log(" ready")

    tokens = [f"t{i}" for i in range(6)]
    with app.app_context():
        broker = app.extensions["taskq"].broker
        # Quick tasks first: having measured them, the worker leases ahead of its threads.
        warm = noop.delay_many(() for _ in range(50))
        for result in warm:
            result.get(timeout=30)
        mark.delay_many((token, 4.0) for token in tokens)
        # both threads run a task, and the cut-off worker leases the rest as well
        wait_until(lambda: r.hlen("test:started") == 2, timeout=20, message="two tasks running")
        wait_until(
            lambda: broker.queue_stats(["default"])["default"].leased == len(tokens),
            timeout=20,
            message="every task leased by the worker about to be cut off",
        )

    worker_host.cut()
    rescuer = _worker(None, url, "-c", "4", "-Q", "default", "-n", "rescuer@%h")
    processes.append(rescuer)
    rescuer.wait_for_log(" ready")
    # The rescuer takes every task over once its lease has lapsed, and runs it.
    wait_until(
        lambda: set(r.hkeys("test:runs")) == set(tokens),
        timeout=60,
        message="every task run by the other worker",
    )
    with app.app_context():
        wait_until(
            lambda: broker.queue_stats(["default"])["default"].unfinished == 0,
            timeout=30,
            message="every task acknowledged",
        )
    # Out of touch for longer than the visibility timeout, it gives up the tasks it had
    # leased but not started (its threads are still busy with the first two).
    cut_off.wait_for_log("dropping 4 unstarted task(s)", timeout=60)

    worker_host.heal()
    # What it was running when cut off finishes; it is not acknowledged in the rescuer's
    # stead (ack.lua checks ownership), and the worker says so.
    cut_off.wait_for_log("no longer holds them", timeout=60)
    with app.app_context():
        # It goes on working: a task only it consumes runs.
        result = mark.apply_async(("after-heal",), queue="cutoff")
        assert result.get(timeout=60) == "after-heal"
        stats = broker.queue_stats(["default"])["default"]
    started = r.hgetall("test:started")
    # Two ran on both sides of the partition; the four it had only leased ran once.
    assert sorted(int(started[t]) for t in tokens) == [1, 1, 1, 1, 2, 2], started
    assert stats.dead == 0 and stats.unfinished == 0, stats
    assert cut_off.proc.poll() is None, cut_off.log
    assert "Lease keeper error" not in cut_off.log, cut_off.log


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
