"""The Flask extension: binding to apps, configuration defaults, the CLI group, and which
app ``.delay()`` and ``AsyncResult`` use (SPEC sections 2 and 3)."""

from __future__ import annotations

import inspect
import json
import warnings
import weakref

import pytest
from flask import Flask

from flask_taskq import AppState, AsyncResult, TaskQueue
from flask_taskq import state as state_module
from flask_taskq.message import SEND_TASK_OPTIONS, Message
from flask_taskq.serializer import JSONSerializer
from flask_taskq.testing import InThreadWorker

NO_REDIS = "redis://127.0.0.1:1/0"  # never contacted by these tests


def make_app(name: str = "ext", **config) -> Flask:
    app = Flask(name)
    app.config["TASKQ_BROKER_URL"] = NO_REDIS
    app.config.update(config)
    return app


def messages(r, key: str) -> list[Message]:
    return [
        Message.from_bytes(fields["m"].encode(), JSONSerializer()) for _, fields in r.xrange(key)
    ]


# -- binding ----------------------------------------------------------------------------------


def test_taskqueue_app_binds_immediately():
    app = make_app()
    tq = TaskQueue(app)

    state = app.extensions["taskq"]
    assert isinstance(state, AppState)
    assert state.taskqueue is tq
    assert state.app is app


def test_init_app_binds_in_a_factory():
    tq = TaskQueue()
    app = make_app()
    assert "taskq" not in app.extensions

    tq.init_app(app)

    assert isinstance(app.extensions["taskq"], AppState)
    assert app.extensions["taskq"].taskqueue is tq


def test_one_taskqueue_serves_several_apps_with_their_own_state():
    tq = TaskQueue()
    first = make_app("first", TASKQ_DEFAULT_QUEUE="one")
    second = make_app("second", TASKQ_DEFAULT_QUEUE="two")
    tq.init_app(first)
    tq.init_app(second)

    assert first.extensions["taskq"].taskqueue is second.extensions["taskq"].taskqueue is tq
    assert first.extensions["taskq"].default_queue == "one"
    assert second.extensions["taskq"].default_queue == "two"


# -- configuration ----------------------------------------------------------------------------


def test_defaults_of_spec_section_3_are_applied():
    app = make_app()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults themselves must not warn
        TaskQueue(app)

    config = app.config
    assert config["TASKQ_DEFAULT_QUEUE"] == "default"
    assert config["TASKQ_RESULT_EXPIRES"] == 86400
    assert config["TASKQ_RESULT_BACKEND"] == NO_REDIS  # same as the broker
    assert config["TASKQ_VISIBILITY_TIMEOUT"] == 30
    assert config["TASKQ_KEY_PREFIX"] == "taskq"
    assert config["TASKQ_MAX_MESSAGE_BYTES"] == 1024 * 1024
    assert config["TASKQ_SERIALIZER"] == "json"
    assert config["TASKQ_ALWAYS_EAGER"] is False

    state = app.extensions["taskq"]
    assert state.default_queue == "default"
    assert state.result_expires == 86400
    assert state.result_url == NO_REDIS
    assert state.key_prefix == "taskq"
    assert state.max_message_bytes == 1024 * 1024
    assert state.serializer.name == "json"
    assert state.eager is False


def test_default_broker_url_is_local_redis():
    app = Flask("bare")
    TaskQueue(app)
    assert app.config["TASKQ_BROKER_URL"] == "redis://localhost:6379/0"
    assert app.config["TASKQ_RESULT_BACKEND"] == "redis://localhost:6379/0"


def test_explicit_settings_win_over_defaults():
    app = make_app(
        TASKQ_DEFAULT_QUEUE="jobs",
        TASKQ_RESULT_EXPIRES=60,
        TASKQ_RESULT_BACKEND="redis://127.0.0.1:2/1",
        TASKQ_KEY_PREFIX="myapp",
        TASKQ_SERIALIZER="msgpack",
    )
    TaskQueue(app)

    state = app.extensions["taskq"]
    assert state.default_queue == "jobs"
    assert state.result_expires == 60
    assert state.result_url == "redis://127.0.0.1:2/1"
    assert state.key_prefix == "myapp"
    assert state.serializer.name == "msgpack"


def test_misspelt_setting_warns_naming_the_right_key():
    app = make_app(TASKQ_BROKER_ULR="redis://127.0.0.1:2/0")

    with pytest.warns(UserWarning, match="TASKQ_BROKER_ULR") as record:
        TaskQueue(app)

    assert any("TASKQ_BROKER_URL" in str(w.message) for w in record)


def test_unknown_serializer_is_refused():
    with pytest.raises(ValueError, match="yaml"):
        TaskQueue(make_app(TASKQ_SERIALIZER="yaml"))


# -- CLI --------------------------------------------------------------------------------------


def test_taskq_command_group_is_registered():
    app = make_app()
    TaskQueue(app)

    result = app.test_cli_runner().invoke(args=["taskq", "--help"])

    assert result.exit_code == 0, result.output
    assert "worker" in result.output
    assert "purge" in result.output


def test_app_without_taskqueue_has_no_taskq_command():
    app = make_app()
    result = app.test_cli_runner().invoke(args=["taskq", "--help"])
    assert result.exit_code != 0
    assert "No such command" in result.output


# -- which app is used ------------------------------------------------------------------------


def test_inside_an_app_context_the_current_app_is_used(redis_url, r):
    tq = TaskQueue()

    @tq.task(name="ext.ping")
    def ping():
        return "pong"

    one = make_app("one", TASKQ_BROKER_URL=redis_url, TASKQ_KEY_PREFIX="one")
    two = make_app("two", TASKQ_BROKER_URL=redis_url, TASKQ_KEY_PREFIX="two")
    tq.init_app(one)
    tq.init_app(two)

    with two.app_context():
        sent = ping.delay()

    assert [m.id for m in messages(r, "two:{default}:p5")] == [sent.id]
    assert r.keys("one:*") == []


def test_async_result_in_an_app_context_reads_that_apps_backend(redis_url, r):
    tq = TaskQueue()
    one = make_app("one", TASKQ_BROKER_URL=redis_url, TASKQ_KEY_PREFIX="one")
    two = make_app("two", TASKQ_BROKER_URL=redis_url, TASKQ_KEY_PREFIX="two")
    tq.init_app(one)
    tq.init_app(two)
    r.set("two:result:{t1}", json.dumps({"status": "SUCCESS", "result": 42}))

    with two.app_context():
        assert AsyncResult("t1").get(timeout=1) == 42
        assert tq.AsyncResult("t1").state == "SUCCESS"
    with one.app_context():
        assert AsyncResult("t1").state == "PENDING"


def test_without_context_two_bound_apps_are_ambiguous(redis_url, r):
    tq = TaskQueue()

    @tq.task(name="ext.ping")
    def ping():
        return "pong"

    one = make_app("one", TASKQ_BROKER_URL=redis_url)
    two = make_app("two", TASKQ_BROKER_URL=redis_url)
    tq.init_app(one)
    tq.init_app(two)

    with pytest.raises(RuntimeError, match="app context"):
        ping.delay()
    with pytest.raises(RuntimeError, match="app context"):
        ping.apply_async(queue="other")
    with pytest.raises(RuntimeError, match="app context"):
        tq.AsyncResult("some-id")
    with pytest.raises(RuntimeError, match="app context"):
        AsyncResult("some-id")
    assert r.keys("taskq:*") == []  # nothing was sent anywhere


def test_without_context_the_single_bound_app_is_used(redis_url, r, monkeypatch):
    # Only TaskQueues of this test count for the top-level AsyncResult(id).
    monkeypatch.setattr(state_module, "taskqueues", weakref.WeakSet())
    tq = TaskQueue()

    @tq.task(name="ext.double")
    def double(x):
        return 2 * x

    app = make_app("only", TASKQ_BROKER_URL=redis_url)
    tq.init_app(app)

    sent = double.delay(21)  # no app context anywhere

    assert [m.id for m in messages(r, "taskq:{default}:p5")] == [sent.id]
    with InThreadWorker(app) as worker:
        worker.drain()
    assert AsyncResult(sent.id).get(timeout=5) == 42
    assert tq.AsyncResult(sent.id).get(timeout=5) == 42


def test_app_of_another_taskqueue_is_refused(redis_url, r):
    mine = TaskQueue()

    @mine.task(name="ext.ping")
    def ping():
        return "pong"

    mine.init_app(make_app("mine", TASKQ_BROKER_URL=redis_url))
    theirs = make_app("theirs", TASKQ_BROKER_URL=redis_url)
    TaskQueue(theirs)

    with theirs.app_context(), pytest.raises(RuntimeError, match="another TaskQueue"):
        ping.delay()
    assert r.keys("taskq:*") == []


def test_unbound_taskqueue_refuses_to_send():
    tq = TaskQueue()

    @tq.task(name="ext.ping")
    def ping():
        return "pong"

    with pytest.raises(RuntimeError, match="app context"):
        ping.delay()
    assert ping() == "pong"  # calling it inline needs no app


# -- public names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "BrokerConnectionError",
        "TimeoutError",
        "NotRegistered",
        "Retry",
        "Reject",
        "SoftTimeLimitExceeded",
        "TimeLimitExceeded",
        "MessageTooLarge",
    ],
)
def test_exceptions_live_in_flask_taskq_exceptions_and_are_reexported(name):
    import flask_taskq
    import flask_taskq.exceptions

    cls = getattr(flask_taskq.exceptions, name)
    assert getattr(flask_taskq, name) is cls
    assert issubclass(cls, Exception)


def test_timeout_error_is_the_builtin_kind():
    import builtins

    import flask_taskq

    assert issubclass(flask_taskq.TimeoutError, builtins.TimeoutError)
    assert flask_taskq.TimeoutError is not builtins.TimeoutError


def test_send_task_options_name_every_keyword_option_of_send_task():
    # beat checks periodic entries against SEND_TASK_OPTIONS (it sits below extension and
    # cannot read send_task's signature): the two must not drift apart.
    params = inspect.signature(TaskQueue.send_task).parameters.values()
    keywords = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert keywords - {"app", "_task"} == SEND_TASK_OPTIONS
