"""Issue 17, item 6: ``TASKQ_ROUTES`` in Celery's forms (a dict, a list/tuple of dicts
and router functions, a router function alone); anything else fails at ``init_app`` with
one line. A worker consuming the routed queues: tests/test_migration_worker.py."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from flask_taskq import TaskQueue


def build(routes, redis_url: str = "redis://127.0.0.1:1/0"):
    tq = TaskQueue()

    @tq.task(name="mail.welcome")
    def welcome(user):
        return user

    @tq.task(name="shop.deliver", queue="declared")
    def deliver(kind, payload=None):
        return kind

    app = Flask("routes")
    app.config.update(TASKQ_BROKER_URL=redis_url, TASKQ_ROUTES=routes)
    tq.init_app(app)
    return tq, app


def queue_of(tq: TaskQueue, app: Flask, name: str, *args, **options) -> tuple[str, int]:
    _, message, _, _ = tq.build_message(name, args, app=app, **options)
    return message.queue, message.priority


def by_kind(name, args, kwargs, options, task=None, **kw):
    """A Celery router: ``shop.deliver`` by its first argument."""
    if name != "shop.deliver":
        return None
    if args[0] == "urgent":
        return {"queue": "urgent", "priority": 9}
    if kwargs.get("payload") == "big":
        return "bulk"  # a queue name, as Celery allows
    return None


def test_a_tuple_of_a_dict_and_a_router_function():
    tq, app = build(({"mail.*": "mail"}, by_kind))
    assert queue_of(tq, app, "mail.welcome", "ann") == ("mail", 5)
    assert queue_of(tq, app, "shop.deliver", "urgent") == ("urgent", 9)
    assert queue_of(tq, app, "shop.deliver", "slow") == ("declared", 5)  # router said None
    _, message, _, _ = tq.build_message("shop.deliver", ("x",), {"payload": "big"}, app=app)
    assert message.queue == "bulk"
    assert queue_of(tq, app, "shop.deliver", "urgent", queue="mine") == ("mine", 9)
    assert app.extensions["taskq"].router.queues() == ["mail"]


def test_a_list_of_dicts_is_tried_in_order():
    tq, app = build([{"mail.welcome": {"queue": "first"}}, {"mail.*": "second", "shop.*": "shop"}])
    assert queue_of(tq, app, "mail.welcome", "ann") == ("first", 5)
    assert queue_of(tq, app, "shop.deliver", "x") == ("shop", 5)


def test_a_router_function_alone_sees_the_call_and_the_task():
    calls = []

    def router(name, args, kwargs, options, task=None, **kw):
        calls.append((name, args, kwargs, options, task))
        return {"queue": "routed"}

    tq, app = build(router)
    assert queue_of(tq, app, "mail.welcome", "ann", countdown=5) == ("routed", 5)
    assert calls == [("mail.welcome", ("ann",), {}, {"countdown": 5}, tq.tasks["mail.welcome"])]


def test_a_compiled_regular_expression_is_a_pattern():
    tq, app = build({re.compile(r"^mail\.w"): "mail"})
    assert queue_of(tq, app, "mail.welcome", "ann") == ("mail", 5)


def test_router_functions_also_route_delay(redis_url, r):
    """``.delay()`` takes its fast path only without router functions."""
    tq, app = build(({"mail.*": "mail"}, by_kind), redis_url)
    with app.app_context():
        tq.tasks["shop.deliver"].delay("urgent")
        tq.tasks["mail.welcome"].delay("ann")
    keys = set(r.keys("taskq:*"))
    assert "taskq:{urgent}:p9" in keys and "taskq:{mail}:p5" in keys, keys


@pytest.mark.parametrize(
    "routes, kind",
    [
        ("mail", "str"),
        (42, "int"),
        ({"mail.*"}, "set"),
        ([{"a": "b"}, "x"], "str"),
    ],
)
def test_anything_else_fails_at_init_app_with_one_line(routes, kind):
    with pytest.raises(ValueError) as info:
        build(routes)
    text = str(info.value)
    assert "\n" not in text
    assert f"is a {kind}" in text
    assert text.endswith(
        "a dict of task name or glob -> queue or options, a router "
        "function (name, args, kwargs, options, task=None, **kw) -> "
        "dict | str | None, or a list/tuple of those"
    )


def test_a_router_function_returning_something_else_fails_when_sending():
    tq, app = build(lambda name, args, kwargs, options, task=None: {"routing_key": "x"})
    with pytest.raises(ValueError, match=r"returned unknown option.* routing_key"):
        queue_of(tq, app, "mail.welcome", "ann")
    tq, app = build(lambda name, args, kwargs, options, task=None: 7)
    with pytest.raises(ValueError, match=r"returned 7 for task 'mail\.welcome'"):
        queue_of(tq, app, "mail.welcome", "ann")
