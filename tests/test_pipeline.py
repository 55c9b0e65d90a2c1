"""The execution pipeline (``flask_taskq/worker/hooks/``): hooks run in order around one
``execute()``, per-task plans keep only what applies, and eager mode runs the same
pipeline. The worker's behaviour through it is covered by the worker, canvas, eager and
fault tests; these pin the pipeline's own rules."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flask_taskq import TaskQueue, states
from flask_taskq.exceptions import Retry
from flask_taskq.message import Message
from flask_taskq.task import autoretry_at, retry_at
from flask_taskq.worker.execute import Outcome
from flask_taskq.worker.hooks import Context, Hook, Pipeline
from tests.apps import api

NO_REDIS = "redis://127.0.0.1:1/0"


class Recorder(Hook):
    """Notes each call in ``log``; ``stop_before`` / ``stop_after`` / ``decide`` change
    what it returns or decides."""

    def __init__(self, name: str, log: list[str], **behaviour: Any) -> None:
        self.name = name
        self.log = log
        self.behaviour = behaviour

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        return not self.behaviour.get("skip", False)

    def before(self, ctx: Context) -> bool:
        self.log.append(f"before {self.name}")
        if self.behaviour.get("decide"):
            ctx.outcome = Outcome(states.REVOKED, None)
        return not self.behaviour.get("stop_before", False)

    def finish(self, ctx: Context) -> None:
        self.log.append(f"finish {self.name}")

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        self.log.append(f"after {self.name} {outcome.status}")
        return not self.behaviour.get("stop_after", False)


class AfterOnly(Hook):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def after(self, ctx: Context, outcome: Outcome) -> bool:
        self.log.append("after only")
        return True


def _ctx(task: str = "t") -> Context:
    return Context(Message(id="1", task=task), None, None, {})


def _pipeline(log: list[str], *hooks: Hook, raises: bool = False) -> Pipeline:
    def execute(ctx: Context) -> Outcome:
        log.append("execute")
        if raises:
            raise SystemExit(3)
        return Outcome(states.SUCCESS, None)

    return Pipeline(hooks, execute)


def test_hooks_run_in_order_around_execute():
    log: list[str] = []
    pipeline = _pipeline(log, Recorder("a", log), Recorder("b", log), AfterOnly(log))

    assert pipeline.process(_ctx()) is True
    assert log == [
        "before a",
        "before b",
        "execute",
        "finish b",
        "finish a",
        "after a SUCCESS",
        "after b SUCCESS",
        "after only",
    ]


def test_a_before_hook_that_settles_the_message_stops_everything():
    log: list[str] = []
    pipeline = _pipeline(log, Recorder("a", log), Recorder("b", log, stop_before=True))

    assert pipeline.process(_ctx()) is False
    assert log == ["before a", "before b", "finish a"]


def test_a_decided_outcome_skips_the_run_and_later_before_hooks():
    log: list[str] = []
    pipeline = _pipeline(log, Recorder("a", log, decide=True), Recorder("b", log))

    assert pipeline.process(_ctx()) is True
    assert log == ["before a", "finish a", "after a REVOKED", "after b REVOKED"]


def test_finish_runs_when_the_run_raises_and_after_does_not():
    log: list[str] = []
    pipeline = _pipeline(log, Recorder("a", log), raises=True)

    with pytest.raises(SystemExit):
        pipeline.process(_ctx())
    assert log == ["before a", "execute", "finish a"]


def test_an_after_hook_returning_false_stops_the_later_ones():
    log: list[str] = []
    pipeline = _pipeline(log, Recorder("a", log, stop_after=True), Recorder("b", log))

    assert pipeline.process(_ctx()) is False
    assert log[-1] == "after a SUCCESS"


def test_plans_keep_only_what_applies_and_what_is_defined():
    log: list[str] = []
    skipped = Recorder("skipped", log, skip=True)
    after_only = AfterOnly(log)
    pipeline = _pipeline(log, skipped, after_only)

    plan = pipeline.plan(_ctx())

    assert plan.before == () and plan.finish == ()
    assert plan.after == (after_only.after,)
    assert pipeline.plan(_ctx()) is plan  # made once per task name
    assert pipeline.plan(_ctx("other")) is not plan


def test_plans_leave_out_hooks_for_headers_or_redeliveries_a_message_lacks():
    from flask_taskq.broker import Delivery

    log: list[str] = []

    class ForHeaders(AfterOnly):
        needs_headers = True

    class ForRedelivered(AfterOnly):
        needs_redelivery = True

    headers, again = ForHeaders(log), ForRedelivered(log)
    pipeline = _pipeline(log, headers, again)
    plain = Context(Message(id="1", task="t"), Delivery("q", 5, "1", b""), None, {})
    tagged = Context(Message(id="2", task="t", headers={"h": 1}), None, None, {})
    redelivered = Context(Message(id="3", task="t"), Delivery("q", 5, "3", b"", 2), None, {})

    assert pipeline.plan(plain).after == ()
    assert pipeline.plan(tagged).after == (headers.after,)
    assert pipeline.plan(redelivered).after == (again.after,)


# -- the retry decision ---------------------------------------------------------------------
def test_retry_at_counts_retries_against_the_limit():
    options = {"max_retries": 2, "default_retry_delay": 10, "retry_backoff": False}
    now = time.time()

    assert now + 9 < retry_at(options, 0) < now + 11
    assert retry_at(options, 2) is None
    assert retry_at(options, 2, max_retries=None) is not None  # no limit
    assert retry_at(options, 0, countdown=0) == pytest.approx(now, abs=1)


def test_autoretry_at_follows_retry_and_autoretry_for():
    tq = TaskQueue()

    @tq.task(name="pipe.flaky", autoretry_for=(KeyError,), max_retries=1)
    def flaky():
        pass

    options = flaky.options_for(None)
    assert autoretry_at(flaky, options, 0, KeyError("x")) is not None
    assert autoretry_at(flaky, options, 1, KeyError("x")) is None  # used up
    assert autoretry_at(flaky, options, 0, ValueError("x")) is None  # not listed
    assert autoretry_at(flaky, options, 5, Retry(when=123.0)) == 123.0  # Task.retry decided


# -- eager mode on the same pipeline ---------------------------------------------------------
@pytest.fixture
def eager_app():
    app = api.create_app({"TASKQ_BROKER_URL": NO_REDIS, "TASKQ_ALWAYS_EAGER": True})
    with app.app_context():
        yield app


def test_delay_inside_an_eager_task_still_runs_at_once():
    tq = TaskQueue()

    @tq.task(name="pipe.inner")
    def inner(x):
        return x * 2

    @tq.task(name="pipe.outer")
    def outer(x):
        return inner.delay(x).get(timeout=1) + 1

    from flask import Flask

    app = Flask("pipe")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)
    with app.app_context():
        assert outer.delay(5).get(timeout=1) == 11


def test_a_long_eager_chain_runs_without_deep_recursion(eager_app):
    import sys

    from flask_taskq import chain

    steps = sys.getrecursionlimit() + 100
    res = chain([api.add.s(0, 0)] + [api.add.s(1) for _ in range(steps - 1)]).apply_async()

    assert res.get(timeout=1) == steps - 1


def test_signal_hooks_join_the_plan_once_a_receiver_connects(eager_app):
    from flask_taskq import signals

    assert api.add.delay(1, 1).get() == 2  # planned, maybe without the signal hooks
    seen: list[str] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs["task_id"])

    signals.task_prerun.connect(receiver)
    try:
        result = api.add.delay(2, 2)
    finally:
        signals.task_prerun.disconnect(receiver)
    assert result.get() == 4
    assert seen == [result.id]


def test_the_rate_limit_hook_joins_the_plan_when_an_override_appears():
    from flask_taskq.broker import Delivery
    from flask_taskq.ratelimit import RateLimiter
    from flask_taskq.worker.consumer import Consumer
    from flask_taskq.worker.execute import Executor
    from flask_taskq.worker.hooks import worker_pipeline
    from flask_taskq.worker.hooks.ratelimit import RateLimit

    app = api.create_app({"TASKQ_BROKER_URL": "memory://"})
    state = app.extensions["taskq"]
    consumer = Consumer(state, state.broker, None, "c", ["default"], 1)
    pipeline = worker_pipeline(state, consumer, Executor(state))
    task = api.add
    ctx = Context(
        Message(id="1", task=task.name),
        Delivery("default", 5, "1", b""),
        task,
        task.options_for(state),
    )

    def limited() -> bool:
        return any(isinstance(b.__self__, RateLimit) for b in pipeline.plan(ctx).before)  # type: ignore[attr-defined]

    consumer._sync()
    assert not limited()  # no rate_limit, no override: nothing to check per message
    RateLimiter(state.store.rate_limits).set_rate(task.name, "5/s")
    consumer._sync()  # what the keeper does every second
    assert limited()
