"""A real Redis Cluster for the tests: 3 masters and 3 replicas, each a redis-server process
on free loopback ports, made with ``redis-cli --cluster create``; started once per test
session and torn down after it.

tests/conftest.py registers this module as a plugin, so every test module can ask for
``redis_cluster``, ``cluster_url`` or ``own_cluster`` and the whole session shares one
cluster (a fixture imported into several modules would be one session cluster each).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import redis_argv, wait_until

#: Milliseconds a node may be unreachable before the cluster counts it as failed: short, so
#: that a failover test does not wait long, and long enough for a loaded 2-core machine.
NODE_TIMEOUT_MS = 2000


def _two_free_ports() -> tuple[int, int]:
    """A client port and a cluster bus port, both free now."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        return a.getsockname()[1], b.getsockname()[1]


class ClusterNode:
    """One redis-server of the cluster."""

    def __init__(self, directory: Path) -> None:
        self.port, self.bus_port = _two_free_ports()
        self.dir = directory / str(self.port)
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            redis_argv(
                self.port,
                *("--cluster-port", str(self.bus_port), "--cluster-enabled", "yes"),
                *("--cluster-config-file", "nodes.conf", "--dir", str(self.dir)),
                *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                # A replica takes over however long its link was down: tests kill masters.
                *("--cluster-replica-validity-factor", "0"),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        wait_until(lambda: _pings(client), message=f"cluster node on port {self.port}")

    def client(self) -> redis.Redis:
        """A plain client of this node alone."""
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class RedisClusterProcesses:
    """Six nodes made into a cluster of 3 masters, each with one replica."""

    def __init__(self, directory: Path, size: int = 6) -> None:
        self.nodes = [ClusterNode(directory) for _ in range(size)]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes) + "/"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(n.address for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        wait_until(self.healthy, timeout=60, interval=0.1, message="cluster_state:ok on all nodes")

    def healthy(self) -> bool:
        """True when every node says the cluster is ok and knows all nodes, and each
        master has an attached, synced replica."""
        if any(node.proc is None for node in self.nodes):
            return False
        for node in self.nodes:
            try:
                info = node.client().cluster("info")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok":
                return False
            if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                return False
        # Every master has its replica attached and in sync (a replica that never synced
        # would not take over from its master).
        synced = 0
        for node in self.nodes:
            try:
                replication = node.client().info("replication")
            except redis.RedisError:
                return False
            if replication.get("role") == "slave" and replication.get("master_link_status") == "up":
                synced += 1
        return synced == len(self.nodes) // 2

    def masters(self) -> list[ClusterNode]:
        """The nodes that are masters now."""
        out = []
        for node in self.nodes:
            role = node.client().execute_command("ROLE")[0]
            if role in (b"master", "master"):
                out.append(node)
        return out

    def master_of(self, key: str) -> ClusterNode:
        """The node that is master of ``key``'s slot now."""
        live = next(n for n in self.nodes if n.proc is not None)
        slot = live.client().execute_command("CLUSTER KEYSLOT", key)
        for start, end, master, *_ in live.client().execute_command("CLUSTER SLOTS"):
            if start <= int(slot) <= end:
                port = int(master[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(key)

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        for node in self.masters():
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A 3-master + 3-replica Redis Cluster for the whole session (skipped without
    redis-cli or redis-server)."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the Redis Cluster tests need it")
    with tempfile.TemporaryDirectory(prefix="taskq-cluster-") as directory:
        cluster = RedisClusterProcesses(Path(directory))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterProcesses) -> str:
    """The session's cluster, emptied for this test, as a ``redis+cluster://`` URL."""
    wait_until(redis_cluster.healthy, timeout=30, interval=0.1, message="a healthy cluster")
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterProcesses]:
    """A cluster of this test alone (3 masters + 3 replicas), which it may break."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the Redis Cluster tests need it")
    with tempfile.TemporaryDirectory(prefix="taskq-cluster-") as directory:
        cluster = RedisClusterProcesses(Path(directory))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
