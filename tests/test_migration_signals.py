"""Issue 17, item 4: signal receivers written for Celery (``sender`` as a keyword) run;
blinker-style ones (the sender first, under any name) still do; one that raises is
logged with its name. Real worker: tests/test_migration_worker.py."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from flask_taskq import TaskQueue, signals


@pytest.fixture
def eager_app():
    tq = TaskQueue()

    @tq.task
    def add(x, y):
        return x + y

    app = Flask("signals")
    app.config.update(TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)
    return app, add


def test_every_receiver_form_runs(eager_app):
    app, add = eager_app
    seen: list[tuple] = []

    def celery_documented(sender=None, task_id=None, result=None, **kw):
        seen.append(("documented", sender, task_id, result))

    def keywords_only(**kw):
        seen.append(("keywords", kw["sender"], kw["task_id"], kw["result"]))

    def task_id_first(task_id, **kw):
        seen.append(("task_id first", kw["sender"], task_id, kw["result"]))

    def blinker_style(app_sender, **kw):
        seen.append(("blinker", app_sender, kw["task_id"], kw["result"]))

    receivers = [celery_documented, keywords_only, task_id_first, blinker_style]
    for receiver in receivers:
        signals.task_success.connect(receiver)
    try:
        with app.app_context():
            task_id = add.delay(1, 2).id
    finally:
        for receiver in receivers:
            signals.task_success.disconnect(receiver)
    assert sorted(seen) == sorted(
        (form, add, task_id, 3) for form in ("documented", "keywords", "task_id first", "blinker")
    )


def test_task_sent_calls_receivers_the_celery_way_too(redis_url):
    tq = TaskQueue()

    @tq.task
    def noop():
        return None

    app = Flask("sent")
    app.config["TASKQ_BROKER_URL"] = redis_url
    tq.init_app(app)
    seen = []

    def after_publish(**kw):
        seen.append((kw["sender"], kw["task_id"]))

    signals.task_sent.connect(after_publish)
    try:
        with app.app_context():
            task_id = noop.delay().id
    finally:
        signals.task_sent.disconnect(after_publish)
    assert seen == [(noop, task_id)]


def test_a_receiver_that_raises_is_logged_by_name(eager_app, caplog):
    app, add = eager_app

    def broken_receiver(sender=None, **kw):
        raise ValueError("bug in receiver")

    signals.task_prerun.connect(broken_receiver)
    try:
        with app.app_context(), caplog.at_level(logging.ERROR, "flask_taskq.worker"):
            assert add.delay(2, 2).get(timeout=1) == 4
    finally:
        signals.task_prerun.disconnect(broken_receiver)
    name = (
        "tests.test_migration_signals.test_a_receiver_that_raises_is_logged_by_name."
        "<locals>.broken_receiver"
    )
    assert f"Receiver {name} of signal task-prerun raised" in caplog.text
    assert "ValueError: bug in receiver" in caplog.text
