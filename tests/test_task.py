"""Declaring tasks and sending them: ``@tq.task``, inline calls, ``.delay()``,
``.apply_async()``, ``tq.send_task()`` and what ends up in Redis (SPEC section 2)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from flask_taskq import AsyncResult, MessageTooLarge, Task, TaskQueue, signals
from flask_taskq.message import Message
from flask_taskq.serializer import JSONSerializer
from tests.apps import api


@pytest.fixture
def api_app(redis_url):
    return api.create_app({"TASKQ_BROKER_URL": redis_url})


@pytest.fixture
def ctx(api_app):
    with api_app.app_context():
        yield api_app


def stream_messages(r, key: str) -> list[Message]:
    """The messages waiting in one priority stream, decoded."""
    return [
        Message.from_bytes(fields["m"].encode(), JSONSerializer()) for _, fields in r.xrange(key)
    ]


def delayed_messages(r, key: str) -> list[tuple[int, Message, float]]:
    """``(priority, message, due time)`` of the members of a delayed sorted set."""
    return [
        (int(member[0]), Message.from_bytes(member[1:].encode(), JSONSerializer()), score)
        for member, score in r.zrange(key, 0, -1, withscores=True)
    ]


# -- declaring ---------------------------------------------------------------------------------


def test_bare_decorator_registers_a_task_named_after_module_and_function():
    assert isinstance(api.add, Task)
    assert api.add.name == "tests.apps.api.add"
    assert api.tq.tasks["tests.apps.api.add"] is api.add
    assert api.add.__name__ == "add"  # functools.wraps-style metadata is kept
    assert api.add.ignore_result is False


def test_decorator_with_options():
    assert api.quiet.name == "api.quiet"
    assert api.tq.tasks["api.quiet"] is api.quiet
    assert api.quiet.options["queue"] == "low"
    assert api.quiet.ignore_result is True


def test_decorator_with_empty_parentheses():
    tq = TaskQueue()

    @tq.task()
    def ping():
        return "pong"

    assert isinstance(ping, Task)
    assert ping.name in tq.tasks
    assert ping() == "pong"


def test_unknown_task_option_is_a_type_error():
    tq = TaskQueue()

    with pytest.raises(TypeError, match="retries"):

        @tq.task(retries=3)
        def ping():
            return "pong"

    assert tq.tasks == {}


def test_calling_a_task_runs_it_inline_without_a_queue(r):
    assert api.add(2, 3) == 5
    assert api.echo(1, k="v") == {"args": [1], "kwargs": {"k": "v"}}
    assert r.keys("*") == []  # no app, no context, no Redis needed


# -- delay ---------------------------------------------------------------------------------------


def test_delay_puts_one_message_in_the_default_stream(ctx, r):
    before = time.time()
    result = api.add.delay(2, y=3)

    assert isinstance(result, AsyncResult)
    assert r.keys("taskq:*") == ["taskq:{default}:p5"]
    [message] = stream_messages(r, "taskq:{default}:p5")
    assert message.id == result.id
    assert message.task == "tests.apps.api.add"
    assert message.args == (2,)
    assert message.kwargs == {"y": 3}
    assert message.queue == "default"
    assert message.priority == 5
    assert message.eta is None
    assert message.expires is None
    assert message.retries == 0
    assert message.headers == {}
    # ``sent`` is kept to the millisecond, rounded to the nearest one.
    assert before - 0.0005 <= message.sent <= time.time() + 0.0005


def test_delay_returns_a_pending_result(ctx):
    result = api.add.delay(1, 1)
    assert result.state == "PENDING"
    assert not result.ready()


def test_each_delay_gets_its_own_id(ctx, r):
    ids = {api.add.delay(i, i).id for i in range(3)}
    assert len(ids) == 3
    assert {m.id for m in stream_messages(r, "taskq:{default}:p5")} == ids


def test_task_queue_and_priority_options_choose_the_stream(ctx, r):
    api.urgent.delay()
    api.quiet.delay("t")

    assert [m.task for m in stream_messages(r, "taskq:{urgent}:p8")] == ["tests.apps.api.urgent"]
    assert [m.task for m in stream_messages(r, "taskq:{low}:p5")] == ["api.quiet"]
    assert r.xlen("taskq:{default}:p5") == 0


def test_default_queue_setting_is_used(redis_url, r):
    app = api.create_app(
        {"TASKQ_BROKER_URL": redis_url, "TASKQ_DEFAULT_QUEUE": "jobs", "TASKQ_KEY_PREFIX": "myapp"}
    )
    with app.app_context():
        api.add.delay(1, 2)

    assert r.keys("*") == ["myapp:{jobs}:p5"]


# -- apply_async ---------------------------------------------------------------------------------


def test_apply_async_carries_its_options(ctx, r):
    result = api.add.apply_async(
        (1,), {"y": 2}, queue="other", priority=9, task_id="x", headers={"trace": "abc"}
    )

    assert result.id == "x"
    [message] = stream_messages(r, "taskq:{other}:p9")
    assert message.id == "x"
    assert message.args == (1,)
    assert message.kwargs == {"y": 2}
    assert message.queue == "other"
    assert message.priority == 9
    assert message.headers == {"trace": "abc"}


def test_countdown_sends_to_the_delayed_set_not_the_stream(ctx, r):
    before = time.time()
    api.add.apply_async(
        (1, 2), queue="other", priority=9, task_id="x", headers={"trace": "abc"}, countdown=30
    )
    after = time.time()

    assert r.keys("taskq:*") == ["taskq:{other}:delayed"]
    [(priority, message, due)] = delayed_messages(r, "taskq:{other}:delayed")
    assert priority == 9
    assert message.id == "x"
    assert message.queue == "other"
    assert message.headers == {"trace": "abc"}
    assert before + 30 <= message.eta <= after + 30
    assert due == pytest.approx(message.eta, abs=1e-3)


def test_eta_datetime_sends_to_the_delayed_set(ctx, r):
    when = datetime.now(timezone.utc) + timedelta(hours=1)

    api.add.apply_async((1, 2), eta=when)

    [(priority, message, due)] = delayed_messages(r, "taskq:{default}:delayed")
    assert priority == 5
    assert message.eta == pytest.approx(when.timestamp())
    assert due == pytest.approx(when.timestamp(), abs=1e-3)


def test_expires_in_seconds_becomes_an_absolute_time(ctx, r):
    before = time.time()
    api.add.apply_async((1, 2), expires=60)

    [message] = stream_messages(r, "taskq:{default}:p5")
    assert before + 60 <= message.expires <= time.time() + 60


def test_expires_task_option_counts_from_sending(ctx, r):
    before = time.time()
    api.perishable.delay()

    [message] = stream_messages(r, "taskq:{default}:p5")
    assert before + 60 <= message.expires <= time.time() + 60


def test_expires_per_call_overrides_the_task_option(ctx, r):
    before = time.time()
    api.perishable.apply_async(expires=5)

    [message] = stream_messages(r, "taskq:{default}:p5")
    assert before + 5 <= message.expires <= time.time() + 5


@pytest.mark.parametrize("priority", [-1, 10, "9", 5.5])
def test_priority_out_of_range_is_refused(ctx, r, priority):
    with pytest.raises(ValueError, match="priority"):
        api.add.apply_async((1, 2), priority=priority)
    assert r.keys("*") == []


@pytest.mark.parametrize("priority", [0, 9])
def test_priority_bounds_are_accepted(ctx, r, priority):
    api.add.apply_async((1, 2), priority=priority)
    assert r.xlen(f"taskq:{{default}}:p{priority}") == 1


# -- send_task -------------------------------------------------------------------------------------


def test_send_task_sends_by_name_without_the_function(ctx, r):
    result = api.tq.send_task("some.name", args=[1, "two"], kwargs={"three": 3})

    [message] = stream_messages(r, "taskq:{default}:p5")
    assert message.id == result.id
    assert message.task == "some.name"
    assert message.args == (1, "two")
    assert message.kwargs == {"three": 3}


def test_send_task_of_a_known_name_uses_its_options(ctx, r):
    api.tq.send_task("api.quiet", args=["t"])
    [message] = stream_messages(r, "taskq:{low}:p5")
    assert message.task == "api.quiet"


def test_send_task_accepts_apply_async_options(ctx, r):
    api.tq.send_task("some.name", queue="mail", priority=2, task_id="m1")
    [message] = stream_messages(r, "taskq:{mail}:p2")
    assert message.id == "m1"


# -- refused at enqueue --------------------------------------------------------------------------


def test_unencodable_positional_argument_is_named(ctx, r):
    with pytest.raises(TypeError, match=r"args\[1\]") as info:
        api.echo.delay(1, {1, 2})
    assert "tests.apps.api.echo" in str(info.value)
    assert r.keys("*") == []


def test_unencodable_keyword_argument_is_named(ctx, r):
    with pytest.raises(TypeError, match=r"kwargs\['when'\]"):
        api.echo.delay(1, when=object())
    assert r.keys("*") == []


def test_unencodable_argument_is_refused_for_delayed_tasks_too(ctx, r):
    with pytest.raises(TypeError, match=r"kwargs\['when'\]"):
        api.echo.apply_async(kwargs={"when": datetime.now()}, countdown=60)
    assert r.keys("*") == []


def test_message_over_the_default_limit_is_refused(ctx, r):
    with pytest.raises(MessageTooLarge, match="TASKQ_MAX_MESSAGE_BYTES"):
        api.echo.delay("x" * (1024 * 1024 + 1))
    assert r.keys("*") == []


def test_message_limit_is_configurable(redis_url, r):
    app = api.create_app({"TASKQ_BROKER_URL": redis_url, "TASKQ_MAX_MESSAGE_BYTES": 1000})
    with app.app_context():
        api.echo.delay("x" * 100)  # fits
        with pytest.raises(MessageTooLarge):
            api.echo.delay("x" * 1000)

    assert r.xlen("taskq:{default}:p5") == 1


# -- signals --------------------------------------------------------------------------------------


def test_task_sent_signal_fires_with_the_task_id(ctx):
    seen = []

    def receiver(sender, **kwargs):
        seen.append((sender, kwargs))

    signals.task_sent.connect(receiver)
    try:
        result = api.add.delay(1, 2)
    finally:
        signals.task_sent.disconnect(receiver)

    assert len(seen) == 1
    sender, kwargs = seen[0]
    assert sender is api.add  # SPEC 2: the sender is the task
    assert kwargs["task_id"] == result.id
    assert kwargs["task"] is api.add
    assert kwargs["message"].id == result.id


def test_task_sent_signal_sent_by_name_has_the_name_as_sender(ctx):
    seen = []

    def receiver(sender, **kwargs):
        seen.append((sender, kwargs["task_id"]))

    signals.task_sent.connect(receiver)
    try:
        result = api.tq.send_task("elsewhere.job")
    finally:
        signals.task_sent.disconnect(receiver)

    assert seen == [("elsewhere.job", result.id)]


def test_task_sent_signal_does_not_fire_when_sending_fails(ctx):
    seen = []

    def receiver(sender, **kwargs):
        seen.append(kwargs["task_id"])

    signals.task_sent.connect(receiver)
    try:
        with pytest.raises(TypeError):
            api.echo.delay({1})
    finally:
        signals.task_sent.disconnect(receiver)

    assert seen == []


def test_default_name_of_a_nested_function_has_no_locals():
    tq = TaskQueue()

    @tq.task
    def inner():
        return None

    assert inner.name == f"{__name__}.inner"
