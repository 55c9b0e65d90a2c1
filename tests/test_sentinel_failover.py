"""Sentinel failover under load: a master with one replica watched by three Sentinels;
the master is SIGKILLed while workers run, Sentinel promotes the replica, and the
producer and the worker processes follow it without a restart."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.apps.flows_app import add, create_app
from tests.conftest import (
    RedisServer,
    WorkerProcess,
    free_port,
    redis_argv,
    resend_until,
    wait_until,
)

APP = "tests.apps.flows_app:create_app"
SERVICE = "themaster"


class SentinelSetup:
    """A master, its replica and three Sentinels (quorum 2), all on loopback."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisServer()
        self.replica_port = free_port()
        self.replica: subprocess.Popen[bytes] | None = None
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.dir = directory

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{SERVICE}/0"

    def start(self) -> None:
        self.master.start()
        self.replica = subprocess.Popen(
            redis_argv(self.replica_port, "--replicaof", "127.0.0.1", str(self.master.port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        replica = redis.Redis(port=self.replica_port, socket_connect_timeout=0.5)
        wait_until(lambda: _link_up(replica), timeout=20, message="the replica to sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        wait_until(
            lambda: all(self._sentinel_count(p) >= 2 for p in self.sentinel_ports),
            timeout=30,
            message="every Sentinel to know the others and the replica",
        )

    def _sentinel_count(self, port: int) -> int:
        try:
            info = redis.Redis(port=port).execute_command("SENTINEL", "MASTER", SERVICE)
        except redis.RedisError:
            return 0
        fields = dict(zip(info[::2], info[1::2], strict=False)) if isinstance(info, list) else info
        fields = {_text(k): _text(v) for k, v in fields.items()}
        if int(fields.get("num-slaves", 0)) < 1:
            return 0
        return int(fields.get("num-other-sentinels", 0))

    def master_port(self) -> int | None:
        try:
            host_port = redis.Redis(port=self.sentinel_ports[0]).execute_command(
                "SENTINEL", "get-master-addr-by-name", SERVICE
            )
        except redis.RedisError:
            return None
        return int(host_port[1]) if host_port else None

    def stop(self) -> None:
        for proc in [*self.sentinels, self.replica]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.master.stop()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _link_up(client: redis.Redis) -> bool:
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(tmp_path)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


def test_work_goes_on_after_sentinel_promotes_the_replica(
    sentinels: SentinelSetup,
    redis_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    url = sentinels.url
    # Results on a separate Redis: what is under test is the broker following the master.
    env = {"TASKQ_BROKER_URL": url, "TASKQ_RESULT_BACKEND": redis_url}
    workers = [start_worker("-P", "threads", "-c", "4", app=APP, env=env) for _ in range(2)]
    app = create_app(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=redis_url)
    with app.app_context():
        before = [add.delay(i, 0) for i in range(100)]
        assert [r.get(timeout=30) for r in before] == list(range(100))
        sentinels.master.stop()  # SIGKILL
        wait_until(
            lambda: sentinels.master_port() == sentinels.replica_port,
            timeout=30,
            interval=0.2,
            message="Sentinel to promote the replica",
        )
        deadline = time.monotonic() + 30
        after = [
            resend_until(lambda tid, i=i: add.apply_async((i, 0), task_id=tid), deadline)
            for i in range(100, 300)
        ]
        assert [r.get(timeout=60) for r in after] == list(range(100, 300))
    for worker in workers:
        assert worker.proc.poll() is None, worker.log
