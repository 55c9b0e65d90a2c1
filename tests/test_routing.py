"""``TASKQ_ROUTES`` and the order in which queue and priority are chosen."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_taskq import TaskQueue
from flask_taskq.routing import Router


def test_exact_names_win_over_globs_and_globs_go_in_order():
    router = Router(
        {"mail.*": "mail", "mail.urgent": {"queue": "fast", "priority": 9}, "*": "catchall"}
    )
    assert router.route("mail.urgent") == {"queue": "fast", "priority": 9}
    assert router.route("mail.digest") == {"queue": "mail"}
    assert router.route("reports.daily") == {"queue": "catchall"}
    assert router.queues() == ["mail", "fast", "catchall"]


def test_unknown_route_option_is_refused():
    with pytest.raises(ValueError, match="TASKQ_ROUTES\\['x'\\]: unknown option"):
        Router({"x": {"queue": "a", "colour": "red"}})


@pytest.fixture
def routed(redis_url):
    tq = TaskQueue()
    app = Flask("routed")
    app.config.update(
        TASKQ_BROKER_URL=redis_url,
        TASKQ_ROUTES={"reports.*": "reports", "mail.send": {"queue": "mail", "priority": 8}},
    )

    @tq.task(name="reports.daily", queue="declared")
    def daily():
        return None

    @tq.task(name="mail.send")
    def send():
        return None

    @tq.task(name="other.thing", queue="declared")
    def thing():
        return None

    tq.init_app(app)
    with app.app_context():
        yield tq, daily, send, thing


def test_queue_comes_from_call_then_routes_then_task_then_default(routed, r):
    tq, daily, send, thing = routed
    assert daily.delay() and r.xlen("taskq:{reports}:p5") == 1
    assert send.delay() and r.xlen("taskq:{mail}:p8") == 1
    assert thing.delay() and r.xlen("taskq:{declared}:p5") == 1
    daily.apply_async(queue="explicit", priority=2)
    assert r.xlen("taskq:{explicit}:p2") == 1
    tq.send_task("unknown.elsewhere")
    assert r.xlen("taskq:{default}:p5") == 1


def test_worker_listens_on_routed_queues_by_default(routed):
    from flask import current_app

    from flask_taskq.worker import default_queues

    state = current_app.extensions["taskq"]
    assert default_queues(state) == ["default", "reports", "mail", "declared"]


def test_unknown_apply_async_option_is_a_type_error(routed, r):
    _, daily, _, _ = routed
    with pytest.raises(TypeError, match="contdown"):
        daily.apply_async(contdown=30)
    with pytest.raises(TypeError, match="link_eror"):
        daily.apply_async(link_eror=None)
    assert r.keys("taskq:{*") == []
