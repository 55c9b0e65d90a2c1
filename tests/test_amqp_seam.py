"""The transport-seam feature tests of tests/test_transport_both.py and the workflow and
beat tests of tests/test_store_flows.py, the same functions, run on RabbitMQ (with the
test redis-server as the store) by a real worker process.

``test_queue_stats_and_known_queues`` is not among them: AMQP does not tell a client how
many messages other consumers hold unacknowledged, so ``leased`` comes from the workers'
heartbeats on RabbitMQ and lags by up to a heartbeat interval, while that test reads it
right after sending (docs/rabbitmq.rst; tests/test_backlog.py waits for it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Transport
from tests.test_amqp import _rabbit_up, amqp_env, vhost  # noqa: F401 - fixtures
from tests.test_store_flows import (  # noqa: F401 - collected here, on RabbitMQ
    sent_stamps,
    test_a_failed_member_fails_the_chord,
    test_beat_sends_each_fire_once_from_the_leader,
    test_chain_passes_each_value_on,
    test_chord_callback_gets_every_member_value,
    test_group_get_returns_every_value,
    test_the_store_fires_a_chord_once_and_keeps_first_values,
    test_workflow_graph_is_recorded_and_loaded_with_states,
)
from tests.test_transport_both import (  # noqa: F401 - collected here, on RabbitMQ
    app,
    test_group_result_save_and_restore,
    test_retry_until_success,
    test_unique_send_while_waiting_returns_the_first_id,
)

pytestmark = pytest.mark.skipif(_rabbit_up() is not None, reason=str(_rabbit_up()))


class AMQPTransport(Transport):
    """RabbitMQ as the broker, the test redis-server as the store."""

    def __init__(self, env: dict[str, str], start: Any) -> None:
        super().__init__("amqp", env["TASKQ_BROKER_URL"], start)
        self.env = env

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "TASKQ_BROKER_URL": self.url,
            "TASKQ_STORE_URL": self.env["TASKQ_STORE_URL"],
            "TASKQ_RESULT_BACKEND": self.env["TASKQ_STORE_URL"],
            "TASKQ_KEY_PREFIX": self.env["TASKQ_KEY_PREFIX"],
            **extra,
        }

    def worker(self, *args: str, app: str, env: dict[str, str] | None = None) -> None:  # noqa: F811
        assert self._start is not None
        env = dict(env or {})
        if env.get("TASKQ_RESULT_BACKEND") == self.url:  # "results where the broker is"
            env["TASKQ_RESULT_BACKEND"] = self.env["TASKQ_STORE_URL"]
        self._start(
            "-P",
            "threads",
            "-c",
            "4",
            *args,
            app=app,
            broker_url=self.url,
            env={**self.env, **env},
        )


@pytest.fixture
def transport(amqp_env: dict[str, str], start_worker: Any) -> Transport:  # noqa: F811
    return AMQPTransport(amqp_env, start_worker)


@pytest.fixture
def flows(transport: AMQPTransport) -> Iterator[Flask]:
    """tests/test_store_flows.py's fixture, with the results in the store."""
    from tests.apps.flows_app import create_app

    flask_app = create_app(**transport.config())
    transport.worker(app="tests.apps.flows_app:create_app")
    with flask_app.app_context():
        yield flask_app
