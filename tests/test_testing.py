"""``flask_taskq.testing``: what users get for their own app's tests. ``InThreadWorker``
runs a real worker on a thread, ``eager(app)`` runs tasks inline, and the pytest plugin
(registered through the ``pytest11`` entry point) provides ``taskq_worker`` and
``taskq_eager`` on top of the ``app`` fixture."""

from __future__ import annotations

import textwrap

import pytest

import flask_taskq
import flask_taskq.testing
from flask_taskq.testing import InThreadWorker, eager
from tests.apps import api
from tests.apps.basic import add, fail, mark

pytest_plugins = ["pytester"]


# -- InThreadWorker --------------------------------------------------------------------------


def test_drain_returns_after_every_queued_task_ran(app, r):
    with app.app_context():
        sums = [add.delay(i, 1) for i in range(10)]
        marks = [mark.delay(f"t{i}") for i in range(5)]

    with InThreadWorker(app) as worker:
        worker.drain()

        assert all(result.ready() for result in sums + marks)  # no waiting needed
        assert [result.get(timeout=0) for result in sums] == [i + 1 for i in range(10)]
        assert r.hgetall("test:runs") == {f"t{i}": "1" for i in range(5)}
        assert r.xlen("taskq:{default}:p5") == 0


def test_drain_never_returns_before_a_just_sent_task_finished(app):
    # A task is briefly neither waiting in Redis nor held by the consumer while it is being
    # fetched; drain() must not take that moment for "everything is done".
    with InThreadWorker(app) as worker, app.app_context():
        for i in range(50):
            result = add.delay(i, 1)
            worker.drain()
            assert result.ready(), f"drain() returned before task {i} finished"


def test_drained_failures_are_recorded(app):
    with app.app_context():
        result = fail.delay("drained")
    with InThreadWorker(app) as worker:
        worker.drain()
    assert result.failed()


def test_drain_gives_up_after_its_timeout(redis_url, r):
    app = api.create_app({"TASKQ_BROKER_URL": redis_url})
    with app.app_context():
        result = api.gate.delay("held")  # runs until the test opens its gate

    with InThreadWorker(app) as worker:
        with pytest.raises(flask_taskq.TimeoutError, match="drained"):
            worker.drain(timeout=0.5)
        r.rpush("test:gate:held", "go")
        worker.drain()

    assert result.get(timeout=1) == "held"


def test_worker_consumes_only_the_queues_it_is_given(redis_url, r):
    app = api.create_app({"TASKQ_BROKER_URL": redis_url})
    with app.app_context():
        low = api.quiet.delay("low-queue")
        default = api.add.delay(1, 2)

    with InThreadWorker(app, queues=["low"]) as worker:
        worker.drain()

    assert r.lrange("test:quiet", 0, -1) == ["low-queue"]
    assert low.id  # ignore_result: nothing to read back
    assert default.state == "PENDING"
    assert r.xlen("taskq:{default}:p5") == 1  # still waiting for a worker of "default"


def test_stopped_worker_takes_no_more_tasks(app, r):
    worker = InThreadWorker(app).start()
    worker.drain()
    worker.stop()

    with app.app_context():
        result = add.delay(1, 1)
    with pytest.raises(flask_taskq.TimeoutError):
        result.get(timeout=0.5)
    assert r.xlen("taskq:{default}:p5") == 1


# -- eager(app) ------------------------------------------------------------------------------


def test_eager_runs_tasks_inline_inside_the_block(app, r):
    with eager(app), app.app_context():
        result = add.delay(2, 3)
        assert result.state == "SUCCESS"
        assert result.get() == 5
        with pytest.raises(Exception, match="inline") as info:
            fail.delay("inline").get()
        assert type(info.value).__name__ == "CustomError"

    assert r.keys("taskq:*") == []  # nothing went through Redis


def test_eager_is_undone_after_the_block(app, r):
    with eager(app):
        assert app.config["TASKQ_ALWAYS_EAGER"] is True

    assert app.config["TASKQ_ALWAYS_EAGER"] is False
    with app.app_context():
        result = add.delay(1, 1)
    assert r.xlen("taskq:{default}:p5") == 1
    assert result.state == "PENDING"


def test_eager_runs_a_task_that_was_sent_to_redis_before(app, r):
    """A task sent the short way caches how it is sent; eager(app) afterwards must
    still run it inline (it went to Redis, and get() never returned), and a send after
    the block goes to Redis again. This is what an InThreadWorker test followed by an
    eager one does."""
    with InThreadWorker(app) as worker, app.app_context():
        sent = add.delay(1, 2)
        worker.drain()
        assert sent.get(timeout=10) == 3
    with eager(app), app.app_context():
        result = add.delay(2, 3)
        assert result.state == "SUCCESS" and result.get(timeout=10) == 5
    assert r.xlen("taskq:{default}:p5") == 0
    with app.app_context():
        after = add.delay(3, 4)
    assert r.xlen("taskq:{default}:p5") == 1
    assert after.state == "PENDING"


def test_eager_is_undone_when_the_block_raises(app):
    with pytest.raises(ZeroDivisionError), eager(app):
        1 / 0  # noqa: B018
    assert app.extensions["taskq"].eager is False
    assert app.config["TASKQ_ALWAYS_EAGER"] is False


# -- the pytest plugin -----------------------------------------------------------------------


def test_plugin_is_registered_through_the_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("flask_taskq") is flask_taskq.testing


def test_taskq_worker_fixture_runs_queued_tasks(app, taskq_worker):
    assert isinstance(taskq_worker, InThreadWorker)
    with app.app_context():
        result = add.delay(20, 22)
    taskq_worker.drain()
    assert result.ready()
    assert result.get(timeout=0) == 42


def test_taskq_eager_fixture_runs_tasks_inline(taskq_eager, r):
    with taskq_eager.app_context():
        assert add.delay(3, 4).get() == 7
    assert r.keys("taskq:*") == []


def test_fixtures_work_in_a_users_project(pytester):
    pytester.makeconftest(
        textwrap.dedent("""
        import pytest
        from flask import Flask
        from flask_taskq import TaskQueue

        tq = TaskQueue()

        @tq.task
        def square(x):
            return x * x

        @pytest.fixture
        def app():
            app = Flask("users_app")
            app.config["TASKQ_BROKER_URL"] = "redis://127.0.0.1:1/0"  # never used
            tq.init_app(app)
            return app
    """)
    )
    pytester.makepyfile(
        textwrap.dedent("""
        from conftest import square

        def test_square(taskq_eager):
            with taskq_eager.app_context():
                assert square.delay(7).get() == 49
    """)
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
