"""Features on every transport, through the broker and backend seams: retries, unique
tasks, queue statistics and saved group results, on ``memory://``, a real Redis and a real
RabbitMQ (``transport`` fixture; on Redis and RabbitMQ a real worker process runs the
tasks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask

from flask_taskq import GroupResult, group, states
from tests.apps import seam_app
from tests.apps.seam_app import STATS_QUEUE, add, flaky, hold, per_user
from tests.conftest import Transport, wait_until

APP = "tests.apps.seam_app:create_app"


@pytest.fixture
def app(transport: Transport) -> Flask:
    return seam_app.create_app(**transport.config())


def test_retry_until_success(transport: Transport, app: Flask) -> None:
    transport.worker(app=APP)
    with app.app_context():
        res = flaky.delay(2)
        assert res.get(timeout=15) == {"retries": 2}
        assert res.state == states.SUCCESS


def test_unique_send_while_waiting_returns_the_first_id(transport: Transport, app: Flask) -> None:
    with app.app_context():
        first = per_user.apply_async((7,), countdown=3600)
        second = per_user.apply_async((7,), countdown=3600)
        other = per_user.apply_async((8,), countdown=3600)
    assert second.id == first.id
    assert other.id != first.id
    stats = app.extensions["taskq"].broker.queue_stats(["default"])["default"]
    assert stats.delayed == 2


def test_queue_stats_and_known_queues(transport: Transport, app: Flask, tmp_path: Path) -> None:
    # Differs on RabbitMQ: AMQP does not tell a client how many messages other consumers
    # hold unacknowledged (``leased`` is 0, docs/rabbitmq.rst), so there the worker starts
    # after the first look, while the three are still ready in RabbitMQ.
    leases_visible = transport.name != "amqp"
    if leases_visible:
        transport.worker(app=APP)
    broker = app.extensions["taskq"].broker
    gate = tmp_path / "open"
    with app.app_context():
        for _ in range(3):
            hold.delay(str(gate))
        hold.apply_async((str(gate),), countdown=3600)
        hold.apply_async((str(gate),), countdown=7200)

    def unfinished() -> int:
        return broker.queue_stats([STATS_QUEUE])[STATS_QUEUE].unfinished

    # Held by the gate: each of the three is ready or leased until it opens.
    stats = broker.queue_stats([STATS_QUEUE, "default"])
    assert stats[STATS_QUEUE].unfinished == 3
    assert stats[STATS_QUEUE].delayed == 2
    assert stats[STATS_QUEUE].dead == 0
    assert stats[STATS_QUEUE].next_due is not None
    assert stats[STATS_QUEUE].next_due > time.time() + 3000
    assert stats["default"].unfinished == stats["default"].delayed == 0
    if not leases_visible:
        assert stats[STATS_QUEUE].ready == 3 and stats[STATS_QUEUE].leased == 0
        transport.worker(app=APP)
    wait_until(lambda: STATS_QUEUE in broker.known_queues(), message="a known queue")
    gate.touch()
    wait_until(lambda: unfinished() == 0, timeout=15, message="the held tasks to finish")
    assert broker.queue_stats([STATS_QUEUE])[STATS_QUEUE].delayed == 2


def test_group_result_save_and_restore(transport: Transport, app: Flask) -> None:
    transport.worker(app=APP)
    with app.app_context():
        res = group(add.s(i, i) for i in range(3)).apply_async()
        res.save()
        restored = GroupResult.restore(res.id)
        assert restored is not None
        assert [r.id for r in restored.results] == [r.id for r in res.results]
        assert restored.get(timeout=15) == [0, 2, 4]
        assert GroupResult.restore("no-such-group") is None
