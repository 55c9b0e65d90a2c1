"""``TASKQ_ALWAYS_EAGER = True``: ``.delay()`` runs the task inline, and its result and
exceptions behave as if a worker had run it (SPEC sections 2 and 3). No Redis is involved:
the apps here point at a port nothing listens on."""

from __future__ import annotations

import time

import pytest
from flask import Flask, current_app, g

from flask_taskq import AsyncResult, NotRegistered, TaskQueue, TaskRevokedError
from tests.apps import api

NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def eager_app():
    app = api.create_app({"TASKQ_BROKER_URL": NO_REDIS, "TASKQ_ALWAYS_EAGER": True})
    with app.app_context():
        yield app


def test_delay_runs_the_task_and_get_returns_its_value(eager_app):
    result = api.add.delay(2, 3)

    assert result.state == "SUCCESS"
    assert result.ready()
    assert result.successful()
    assert result.get() == 5
    assert result.result == 5


def test_delay_runs_before_it_returns():
    tq = TaskQueue()
    calls = []

    @tq.task(name="eager.record")
    def record(value):
        calls.append(value)
        return len(calls)

    app = Flask("eager")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)

    result = record.delay("first")

    assert calls == ["first"]
    assert result.get() == 1


def test_task_runs_in_an_app_context_without_one_at_the_caller():
    tq = TaskQueue()

    @tq.task(name="eager.app_name")
    def app_name():
        return current_app.name

    app = Flask("eager_ctx")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)

    assert app_name.delay().get() == "eager_ctx"  # no app context pushed here


def test_task_gets_a_fresh_app_context_as_on_a_worker(eager_app):
    g.marker = "caller"

    info = api.app_info.delay().get()

    assert info == {"has_context": True, "app": "api", "marker": None}
    assert g.marker == "caller"  # the caller's context is untouched


def test_exception_is_reraised_by_get(eager_app):
    result = api.boom.delay("eager failure")  # delay itself does not raise

    assert result.state == "FAILURE"
    assert result.failed()
    assert result.ready()
    assert not result.successful()
    with pytest.raises(api.ApiError, match="eager failure") as info:
        result.get()
    assert "raise ApiError(message)" in "\n".join(info.value.__notes__)
    assert "ApiError: eager failure" in result.traceback


def test_get_without_propagate_returns_the_exception(eager_app):
    exc = api.boom.delay("kept").get(propagate=False)
    assert isinstance(exc, api.ApiError)
    assert str(exc) == "kept"


def test_arguments_go_through_the_serializer(eager_app):
    assert api.typename((1, 2)) == "tuple"  # an inline call passes the tuple itself
    assert api.typename.delay((1, 2)).get() == "list"  # as a worker would receive it
    assert api.echo.delay(1, when={"a": (1,)}).get() == {
        "args": [1],
        "kwargs": {"when": {"a": [1]}},
    }


def test_unencodable_argument_raises_type_error_at_delay():
    tq = TaskQueue()
    calls = []

    @tq.task(name="eager.record")
    def record(value):
        calls.append(value)

    app = Flask("eager")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)

    with pytest.raises(TypeError, match=r"args\[0\]"):
        record.delay({1, 2})
    assert calls == []  # the task never ran


def test_unencodable_return_value_fails_the_task():
    tq = TaskQueue()

    @tq.task(name="eager.returns_a_set")
    def returns_a_set():
        return {1, 2}

    app = Flask("eager")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)

    result = returns_a_set.delay()
    assert result.state == "FAILURE"
    with pytest.raises(TypeError, match="cannot be encoded"):
        result.get()


def test_task_with_an_expires_option_runs_when_sent_in_time(eager_app):
    result = api.perishable.delay()
    assert result.state == "SUCCESS"
    assert result.get() == "fresh"


def test_expired_task_is_revoked_not_run(eager_app):
    result = api.add.apply_async((1, 1), expires=time.time() - 1)
    assert result.state == "REVOKED"
    assert result.ready()
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get()


def test_apply_async_options_are_kept(eager_app):
    result = api.add.apply_async((1, 1), task_id="eager-1", queue="elsewhere", priority=9)
    assert result.id == "eager-1"
    assert AsyncResult("eager-1").get() == 2


def test_unknown_task_name_is_refused(eager_app):
    with pytest.raises(NotRegistered, match=r"no\.such\.task"):
        api.tq.send_task("no.such.task")


def test_eager_setting_is_read_from_config(eager_app):
    assert eager_app.extensions["taskq"].eager is True
    plain = api.create_app({"TASKQ_BROKER_URL": NO_REDIS})
    assert plain.extensions["taskq"].eager is False
