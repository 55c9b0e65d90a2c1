"""``TASKQ_BROKER_URL = "memory://"``: tasks go through the real worker code on threads of
the app's own process, with no Redis at all (SPEC section 3)."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, current_app

from flask_taskq import TaskQueue
from flask_taskq.backend.memory import MemoryBackend
from flask_taskq.broker.memory import MemoryBroker
from tests.apps import api


@pytest.fixture
def mem_app():
    app = api.create_app({"TASKQ_BROKER_URL": "memory://"})
    with app.app_context():
        yield app


def test_memory_app_uses_no_redis(mem_app):
    state = mem_app.extensions["taskq"]
    assert isinstance(state.broker, MemoryBroker)
    assert isinstance(state.backend, MemoryBackend)
    assert mem_app.config["TASKQ_RESULT_BACKEND"] == "memory://"


def test_delay_then_get_returns_the_value(mem_app):
    result = api.add.delay(2, 3)
    assert result.get(timeout=5) == 5
    assert result.state == "SUCCESS"
    assert result.successful()


def test_exceptions_propagate(mem_app):
    result = api.boom.delay("in memory")
    with pytest.raises(api.ApiError, match="in memory") as info:
        result.get(timeout=5)
    assert "Traceback in the worker" in "\n".join(info.value.__notes__)
    assert result.state == "FAILURE"


def test_tasks_run_on_background_threads_in_an_app_context():
    tq = TaskQueue()

    @tq.task(name="memory.where")
    def where():
        return {"app": current_app.name, "thread": threading.current_thread().name}

    app = Flask("memory_where")
    app.config["TASKQ_BROKER_URL"] = "memory://"
    tq.init_app(app)

    seen = where.delay().get(timeout=5)  # no app context pushed by the caller

    assert seen["app"] == "memory_where"
    assert seen["thread"] != threading.current_thread().name


def test_many_tasks_all_complete(mem_app):
    results = [api.add.delay(i, i) for i in range(50)]
    assert [r.get(timeout=5) for r in results] == [2 * i for i in range(50)]


def test_tasks_of_their_own_queue_run(mem_app):
    assert api.urgent.delay().get(timeout=5) == "done"


def test_countdown_runs_when_due(mem_app):
    assert api.add.apply_async((1, 1), countdown=0.2).get(timeout=10) == 2


def test_unencodable_argument_is_refused(mem_app):
    with pytest.raises(TypeError, match=r"args\[0\]"):
        api.typename.delay({1})


def test_worker_command_refuses_a_memory_broker():
    app = api.create_app({"TASKQ_BROKER_URL": "memory://"})

    result = app.test_cli_runner().invoke(args=["taskq", "worker", "-P", "solo"])

    assert result.exit_code != 0
    assert "memory://" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_memory_worker_runs_tasks_sent_to_any_queue():
    from tests.apps.api import add, create_app

    app = create_app({"TASKQ_BROKER_URL": "memory://"})
    with app.app_context():
        assert add.apply_async((2, 2), queue="elsewhere").get(timeout=5) == 4


def test_memory_worker_honours_a_paused_queue(mem_app):
    """The in-process worker consumes every queue (``*``): a paused one is left alone
    until it is resumed."""
    from flask_taskq.monitor import Monitor
    from tests.conftest import wait_until

    state = mem_app.extensions["taskq"]
    monitor = Monitor(state.store.monitor)
    assert api.add.delay(1, 1).get(timeout=5) == 2  # the worker is up
    monitor.pause(["a-paused"])
    wait_until(
        lambda: [p for p in monitor.processes() if p["paused"] == ["a-paused"]],
        message="the worker learns the pause",
    )

    held = api.add.apply_async((1, 2), queue="a-paused")
    # sent after, to a queue that sorts after it: it runs, the paused one was not taken
    assert api.add.apply_async((2, 2), queue="b-open").get(timeout=5) == 4
    assert held.state == "PENDING"
    assert state.broker.queue_length("a-paused") == 1

    monitor.resume(["a-paused"])
    assert held.get(timeout=10) == 3
