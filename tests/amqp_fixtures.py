"""RabbitMQ for the tests: is it here, a vhost of the test's own (created and deleted
with ``rabbitmqctl``, never ``/``), and the ``amqp`` member of the ``transport`` fixture
(RabbitMQ as the broker, the test's private redis-server as the store)."""

from __future__ import annotations

import gc
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

RABBIT = ("127.0.0.1", 5672)


def rabbit_problem() -> str | None:
    """Why the RabbitMQ tests cannot run here, or None."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not found"
    try:
        socket.create_connection(RABBIT, timeout=1).close()
    except OSError as exc:
        return f"RabbitMQ unreachable on {RABBIT[0]}:{RABBIT[1]} ({exc})"
    try:
        import pika  # noqa: F401
    except ImportError:
        return "pika is not installed (pip install 'flask-taskq[amqp]')"
    return None


def ctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl -q <args>``; return its output."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=timeout
    )
    return out.stdout


def amqp_url(vhost: str) -> str:
    return f"amqp://guest:guest@{RABBIT[0]}:{RABBIT[1]}/{vhost}"


@pytest.fixture
def amqp_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of this test only, deleted afterwards (closing its connections)."""
    problem = rabbit_problem()
    if problem is not None:
        pytest.skip(problem)
    name = f"taskq-test-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        _close_brokers_of(name)
        ctl("delete_vhost", name)


def _close_brokers_of(vhost: str) -> None:
    """Close the AMQP brokers the test's apps left open on ``vhost``, so that their
    connection threads do not go on reconnecting to a deleted vhost."""
    from flask_taskq.broker.amqp.broker import AMQPBroker

    for obj in gc.get_objects():
        if isinstance(obj, AMQPBroker) and obj.url.endswith("/" + vhost):
            obj.close()


def make_transport(base: type, vhost: str, store_url: str, start: Callable[..., Any]) -> Any:
    """The ``amqp`` transport: RabbitMQ (``vhost``) as the broker, ``store_url`` as the
    store and result backend; workers are real processes with the same settings."""

    class AMQPTransport(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__("amqp", amqp_url(vhost), start)
            self.vhost = vhost
            self.store_url = store_url

        def _results(self, config: dict[str, Any]) -> dict[str, Any]:
            # "results where the broker is" means the store here: RabbitMQ keeps none
            if config.get("TASKQ_RESULT_BACKEND") in (None, self.url):
                config["TASKQ_RESULT_BACKEND"] = self.store_url
            return config

        def config(self, **extra: Any) -> dict[str, Any]:
            return self._results(
                {"TASKQ_BROKER_URL": self.url, "TASKQ_STORE_URL": self.store_url, **extra}
            )

        def worker(self, *args: str, app: str, env: dict[str, str] | None = None) -> None:
            env = self._results({"TASKQ_STORE_URL": self.store_url, **(env or {})})
            self._start("-P", "threads", "-c", "4", *args, app=app, broker_url=self.url, env=env)

    return AMQPTransport()
