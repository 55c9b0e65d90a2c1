"""Issue 17, item 8: Celery's config keys in ``app.config`` (upper-case ``CELERY_*``,
Celery 3 names, lower-case names) or in a ``CELERY`` dict are applied to their
``TASKQ_*`` keys with one warning each; the others are listed in one warning. A worker
started from such a config: tests/test_migration_worker.py."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from flask import Flask

from flask_taskq import TaskQueue, crontab


def init(**config) -> tuple[Flask, list[str]]:
    app = Flask("celery_keys")
    app.config.update(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TaskQueue(app)
    # the settings' warnings only (a ResourceWarning of an earlier test's garbage may land)
    return app, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_flasks_celery_dict_is_applied_with_a_warning_per_key():
    app, messages = init(
        CELERY={
            "broker_url": "redis://127.0.0.1:1/3",
            "result_backend": "redis://127.0.0.1:1/4",
            "task_ignore_result": True,
            "task_routes": ({"a.*": "a"},),
            "imports": ["myapp.tasks"],
            "include": "myapp.more",
        }
    )
    state = app.extensions["taskq"]
    assert state.broker_url == "redis://127.0.0.1:1/3"
    assert state.result_url == "redis://127.0.0.1:1/4"
    assert app.config["TASKQ_TASK_IGNORE_RESULT"] is True
    assert state.router.route("a.b") == {"queue": "a"}
    assert app.config["TASKQ_IMPORTS"] == ["myapp.tasks", "myapp.more"]
    assert messages == [
        "Celery setting CELERY['broker_url'] is applied as TASKQ_BROKER_URL: rename it to "
        "TASKQ_BROKER_URL",
        "Celery setting CELERY['result_backend'] is applied as TASKQ_RESULT_BACKEND: "
        "rename it to TASKQ_RESULT_BACKEND",
        "Celery setting CELERY['task_ignore_result'] is applied as "
        "TASKQ_TASK_IGNORE_RESULT: rename it to TASKQ_TASK_IGNORE_RESULT",
        "Celery setting CELERY['task_routes'] is applied as TASKQ_ROUTES: rename it to "
        "TASKQ_ROUTES",
        "Celery setting CELERY['imports'] is applied as TASKQ_IMPORTS: rename it to TASKQ_IMPORTS",
        "Celery setting CELERY['include'] is applied as TASKQ_IMPORTS: rename it to TASKQ_IMPORTS",
    ]


def test_upper_case_and_celery_3_names():
    schedule = {"nightly": {"task": "myapp.nightly", "schedule": crontab(minute=0, hour=3)}}
    app, messages = init(
        CELERY_BROKER_URL="redis://127.0.0.1:1/5",
        CELERY_RESULT_BACKEND=None,
        CELERYBEAT_SCHEDULE=schedule,
        CELERY_TIMEZONE="Europe/Paris",
        CELERY_TASK_RESULT_EXPIRES=timedelta(hours=2),
        CELERYD_CONCURRENCY=3,
        CELERY_ALWAYS_EAGER=False,
        BROKER_URL="redis://127.0.0.1:1/6",
    )
    config = app.extensions["taskq"].config
    assert config["TASKQ_BROKER_URL"] == "redis://127.0.0.1:1/6"  # the later key wins
    assert config["TASKQ_RESULT_BACKEND"] is None
    assert config["TASKQ_BEAT_SCHEDULE"] is schedule
    assert config["TASKQ_TIMEZONE"] == "Europe/Paris"
    assert config["TASKQ_RESULT_EXPIRES"] == 7200
    assert config["TASKQ_WORKER_CONCURRENCY"] == 3
    assert config["TASKQ_ALWAYS_EAGER"] is False
    named = [m.split(" is applied as ")[0].removeprefix("Celery setting ") for m in messages]
    assert named == [
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "CELERYBEAT_SCHEDULE",
        "CELERY_TIMEZONE",
        "CELERY_TASK_RESULT_EXPIRES",
        "CELERYD_CONCURRENCY",
        "CELERY_ALWAYS_EAGER",
        "BROKER_URL",
    ]


def test_lower_case_names_at_the_top_level():
    app, messages = init(
        broker_url="redis://127.0.0.1:1/7", beat_schedule={}, task_routes={"x": "y"}
    )
    assert app.config["TASKQ_BROKER_URL"] == "redis://127.0.0.1:1/7"
    assert app.config["TASKQ_ROUTES"] == {"x": "y"}
    assert len(messages) == 3 and all(" is applied as TASKQ_" in m for m in messages)


def test_a_taskq_key_wins_over_the_celery_one():
    app, messages = init(
        TASKQ_BROKER_URL="redis://127.0.0.1:1/1", CELERY_BROKER_URL="redis://127.0.0.1:1/2"
    )
    assert app.config["TASKQ_BROKER_URL"] == "redis://127.0.0.1:1/1"
    assert messages == ["Celery setting CELERY_BROKER_URL is ignored: TASKQ_BROKER_URL is set"]


def test_unknown_celery_keys_are_listed_once_and_different_meanings_explained():
    app, messages = init(
        CELERY={
            "result_compression": "zlib",
            "accept_content": ["json"],
            "task_default_priority": 0,
        },
        CELERY_SEND_EVENTS=True,
        worker_prefetch_multiplier=1,
        BROKER_TRANSPORT_OPTIONS={"visibility_timeout": 60},
        CELERY_SECURITY_KEY="k",
        result_serializer="json",
        SECRET_KEY="x",
        some_other="y",
    )
    assert messages == [
        "Celery setting CELERY['task_default_priority'] is not applied: set "
        "TASKQ_TASK_DEFAULT_PRIORITY (9 runs first: use 9 - value)",
        "Celery setting worker_prefetch_multiplier is not applied: set "
        "TASKQ_WORKER_PREFETCH (a number of messages per process, not a multiplier)",
        "Celery setting BROKER_TRANSPORT_OPTIONS is not applied: set "
        "TASKQ_VISIBILITY_TIMEOUT (for its visibility_timeout)",
        "Celery setting CELERY_SECURITY_KEY is not applied: set TASKQ_SIGNING_KEY (a "
        "shared secret)",
        "Celery settings without a flask-taskq counterpart, ignored: "
        "CELERY['result_compression'], CELERY['accept_content'], CELERY_SEND_EVENTS, "
        "result_serializer",
    ]
    assert app.config["TASKQ_TASK_DEFAULT_PRIORITY"] == 5
    assert app.config["TASKQ_VISIBILITY_TIMEOUT"] == 30
    assert app.config["TASKQ_SIGNING_KEY"] is None


def test_an_app_without_celery_keys_gets_no_warning():
    _, messages = init(TASKQ_BROKER_URL="redis://127.0.0.1:1/0", SECRET_KEY="x")
    assert messages == []


def test_from_prefixed_env_as_in_flasks_celery_example(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLASK_CELERY__broker_url", "redis://127.0.0.1:1/9")
    app = Flask("env")
    app.config["CELERY"] = {"task_ignore_result": True}
    app.config.from_prefixed_env()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TaskQueue(app)
    assert app.config["TASKQ_BROKER_URL"] == "redis://127.0.0.1:1/9"
    assert app.config["TASKQ_TASK_IGNORE_RESULT"] is True


def test_celery_task_track_started_sets_taskq_track_started():
    app, messages = init(CELERY={"task_track_started": False})
    assert app.config["TASKQ_TRACK_STARTED"] is False
    assert messages == [
        "Celery setting CELERY['task_track_started'] is applied as TASKQ_TRACK_STARTED: "
        "rename it to TASKQ_TRACK_STARTED"
    ]


@pytest.mark.parametrize(
    "config",
    [
        {"CELERY": {"result_extended": True}},
        {"CELERY_RESULT_EXTENDED": True},
        {"result_extended": True},
    ],
)
def test_celery_result_extended_sets_taskq_result_extended(config):
    app, messages = init(**config)
    assert app.config["TASKQ_RESULT_EXTENDED"] is True
    assert app.extensions["taskq"].config["TASKQ_RESULT_EXTENDED"] is True
    assert len(messages) == 1
    assert messages[0].endswith(
        "is applied as TASKQ_RESULT_EXTENDED: rename it to TASKQ_RESULT_EXTENDED"
    )


def test_taskq_result_extended_is_off_by_default():
    app, messages = init()
    assert app.config["TASKQ_RESULT_EXTENDED"] is False and messages == []
