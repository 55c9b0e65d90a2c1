"""Helpers every benchmark script shares (and the peers' driver, which runs in another
virtualenv: this module needs nothing but redis-py)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Collection

import redis


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, interval: float = 0.01):
    """Poll ``condition`` until it returns something truthy; return that (or None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def pinned(cpus: Collection[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that binds the child (all its threads and children, which inherit
    it) to ``cpus``; None when there is nothing to bind."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


def start_redis(
    aof_dir: str | None = None, cpus: Collection[int] | None = None
) -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free loopback port (never 6379); returns the process
    and its URL. Persistence is off, or with ``aof_dir`` an append-only file there,
    fsynced every second. With ``cpus``, the server and all its threads run only there."""
    port = free_port()
    persistence = (
        ["--appendonly", "no"]
        if aof_dir is None
        else ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", aof_dir]
    )
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *persistence,
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pinned(cpus),
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.5)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    if not wait_for(pings, 10.0, 0.05):
        proc.kill()
        raise SystemExit(f"redis-server did not start on port {port}")
    return proc, f"redis://127.0.0.1:{port}/0"
