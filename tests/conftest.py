"""Shared fixtures: a real redis-server on a free loopback port, apps, and workers run as
real ``flask taskq worker`` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.amqp_fixtures import amqp_vhost  # noqa: F401 - a fixture of the transports

ROOT = Path(__file__).resolve().parent.parent
# The Redis Cluster fixtures, one cluster per session for every module that asks.
pytest_plugins = ["tests.cluster_fixtures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def resend_until(send: Callable[[str | None], Any], deadline: float, pause: float = 0.1) -> Any:
    """``send(task_id)`` (None the first time) while the broker fails over or moves slots:
    a send that raised ``BrokerConnectionError`` is made again under the task id the error
    names (so a message that may have been enqueued is not doubled), until ``deadline``
    (``time.monotonic()``), as an app would (docs/reliability.rst)."""
    from flask_taskq import BrokerConnectionError

    task_id = None
    while True:
        try:
            return send(task_id)
        except BrokerConnectionError as exc:
            task_id = exc.task_id
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)


def redis_argv(port: int, *options: str, bind: str = "127.0.0.1") -> list[str]:
    """The command line of a test redis-server on ``port``: no persistence, quiet, then
    ``options`` (a later option wins over an earlier one, ``--appendonly yes`` too)."""
    return [
        *("redis-server", "--port", str(port), "--bind", bind),
        *("--save", "", "--appendonly", "no", "--loglevel", "warning", *options),
    ]


class RedisServer:
    """A private redis-server process on 127.0.0.1 (never the shared 6379)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            redis_argv(self.port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: _pings(client), message=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared test server, emptied for this test."""
    if redis_server.proc is None:
        redis_server.start()
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which the test may stop and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch):
    """The ``tests.apps.basic`` app on the test Redis (used by pytest-flask too)."""
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.basic import create_app

    return create_app()


class WorkerProcess:
    """A ``flask --app ... taskq worker`` subprocess with its log captured."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, text: str, timeout: float = 15.0, count: int = 1) -> None:
        wait_until(
            lambda: self.log.count(text) >= count or self.proc.poll() is not None,
            timeout,
            message=f"{text!r} in the worker log",
        )
        assert self.log.count(text) >= count, f"worker exited early:\n{self.log}"

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the worker and every child it forked."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Close the log pipe once the reader has seen its end (every process that held
        it exited); left open, it is closed by the garbage collector during some later
        test, whose recorded warnings then hold a ResourceWarning."""
        self._reader.join(5)
        if not self._reader.is_alive() and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def start_worker(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers: ``start_worker("-P", "solo", app="tests.apps.basic:create_app",
    env={...})``; each is ready (its "ready" log line seen) when returned."""
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        app: str = "tests.apps.basic:create_app",
        env: dict[str, str] | None = None,
        ready: int | None = None,
        broker_url: str | None = None,
    ) -> WorkerProcess:
        full_env = {
            **os.environ,
            "TASKQ_BROKER_URL": broker_url or redis_url,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        cmd = [sys.executable, "-m", "flask", "--app", app, "taskq", "worker", "-l", "info", *args]
        worker = WorkerProcess(cmd, full_env)
        started.append(worker)
        expected = ready if ready is not None else _ready_lines(args)
        worker.wait_for_log(" ready", count=expected)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill_group()
        worker.close()


def _ready_lines(args: tuple[str, ...]) -> int:
    """How many consuming processes report ready: one, or -c of them in prefork."""
    argv = list(args)
    pool = argv[argv.index("-P") + 1] if "-P" in argv else "prefork"
    if pool != "prefork":
        return 1
    return int(argv[argv.index("-c") + 1]) if "-c" in argv else (os.cpu_count() or 1)


class Transport:
    """One transport the feature tests run on (the ``transport`` fixture): ``memory://``,
    where the app's own threads run tasks, or the test redis-server, where a real
    ``flask taskq worker`` process does."""

    def __init__(self, name: str, url: str, start: Callable[..., WorkerProcess] | None) -> None:
        self.name = name
        self.url = url
        #: Where shared state lives (on RabbitMQ: the test's redis-server).
        self.store_url = url
        self._start = start

    @property
    def is_memory(self) -> bool:
        return self.name == "memory"

    def config(self, **extra: Any) -> dict[str, Any]:
        """App config for this transport (results on the same store)."""
        return {"TASKQ_BROKER_URL": self.url, "TASKQ_RESULT_BACKEND": self.url, **extra}

    def worker(self, *args: str, app: str, env: dict[str, str] | None = None) -> None:
        """Run a worker for ``app`` (a ``module:factory`` that reads ``TASKQ_BROKER_URL``
        from the environment): a real process on Redis, nothing on ``memory://`` (the
        app's in-process worker runs the tasks)."""
        if self._start is not None:
            self._start("-P", "threads", "-c", "4", *args, app=app, env=env)


@pytest.fixture(params=["memory", "redis", "amqp"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """Parametrizes a feature test over ``memory://``, a real redis-server and a real
    RabbitMQ (a vhost of the test's own, with the redis-server as the store)."""
    if request.param == "memory":
        return Transport("memory", "memory://", None)
    url = request.getfixturevalue("redis_url")
    if request.param == "amqp":
        from tests.amqp_fixtures import make_transport

        vhost = request.getfixturevalue("amqp_vhost")  # deleted after the workers stop
        transport: Transport = make_transport(
            Transport, vhost, url, request.getfixturevalue("start_worker")
        )
        return transport
    return Transport("redis", url, request.getfixturevalue("start_worker"))
