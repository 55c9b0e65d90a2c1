"""``shared_task`` (SPEC sections 2 and 9) and the ``TASKQ_TASK_*`` defaults of task
options: definitions without a TaskQueue, registered in every TaskQueue of the process,
sent with the current app's, run by real workers with each app's own config."""

from __future__ import annotations

import json
import time
import warnings

import pytest
import redis
from flask import Flask

from flask_taskq import AsyncResult, SharedTask, Task, TaskQueue, shared_task
from flask_taskq.message import Message
from flask_taskq.serializer import JSONSerializer
from tests.apps.shared_app import create_app, isolated_shared_tasks
from tests.conftest import wait_until

APP = "tests.apps.shared_app:create_app"
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def tasks():
    """``tests.apps.shared_tasks``, and nothing shared left behind after the test."""
    with isolated_shared_tasks("tests.apps.shared_tasks") as [module]:
        yield module


def make_app(redis_url: str, label: str, **config) -> Flask:
    app = create_app(
        {"TASKQ_BROKER_URL": redis_url, "TASKQ_KEY_PREFIX": label, "LABEL": label, **config}
    )
    app.testing = True
    return app


def worker_env(label: str, **config) -> dict[str, str]:
    """Environment making the worker's app the same as ``make_app(url, label, **config)``."""
    env = {"FLASK_TASKQ_KEY_PREFIX": label, "FLASK_LABEL": label}
    env.update({f"FLASK_{key}": json.dumps(value) for key, value in config.items()})
    return env


def seen(r, count: int) -> dict[str, dict]:
    """The first ``count`` reports of ``report``/``report_own``, by token."""
    wait_until(lambda: r.llen("test:seen") >= count, timeout=20, message=f"{count} reports")
    return {item["token"]: item for item in map(json.loads, r.lrange("test:seen", 0, -1))}


# -- defining ------------------------------------------------------------------------------


def test_a_module_of_shared_tasks_needs_no_taskqueue(tasks):
    assert "TaskQueue" not in vars(tasks) and "tq" not in vars(tasks)
    assert isinstance(tasks.add, SharedTask) and isinstance(tasks.add, Task)
    assert tasks.add.name == "tests.apps.shared_tasks.add"
    assert tasks.add.__name__ == "add"
    assert tasks.progress.bind is True
    assert tasks.progress.own_options == {"ignore_result": False}


def test_a_taskqueue_created_later_registers_the_shared_tasks():
    @shared_task(name="shared.early")
    def early(x):
        return x * 2

    tq = TaskQueue()

    registered = tq.tasks["shared.early"]
    assert type(registered) is Task
    assert registered.taskqueue is tq
    assert registered.run is early.run
    assert registered(21) == 42


def test_a_shared_task_defined_later_joins_every_existing_taskqueue():
    first, second = TaskQueue(), TaskQueue()

    @shared_task(bind=True, name="shared.late", queue="mail", max_retries=2)
    def late(self):
        return self.name

    for tq in (first, second):
        registered = tq.tasks["shared.late"]
        assert registered.taskqueue is tq
        assert registered.bind is True
        assert registered.own_options == {"queue": "mail", "max_retries": 2}
    assert first.tasks["shared.late"] is not second.tasks["shared.late"]


def test_bare_decorator_and_every_task_option():
    @shared_task
    def bare():
        return "bare"

    options = dict(
        queue="q",
        priority=7,
        max_retries=1,
        autoretry_for=(OSError,),
        retry_backoff=True,
        retry_backoff_max=60,
        retry_jitter=False,
        default_retry_delay=5,
        rate_limit="10/s",
        time_limit=60,
        soft_time_limit=50,
        ignore_result=True,
        expires=30,
        acks_late=True,
        unique=True,
        unique_for=120,
    )

    @shared_task(name="shared.full", bind=True, **options)
    def full(self):
        return self.name

    assert bare.name == f"{__name__}.bare"
    assert bare() == "bare"
    assert full.own_options == options
    assert full() == "shared.full"  # a bound task called inline gets itself
    assert TaskQueue().tasks["shared.full"].own_options == options


def test_bad_options_fail_where_the_task_is_defined():
    with pytest.raises(TypeError, match="retries"):

        @shared_task(retries=3)
        def misspelt():
            pass

    with pytest.raises(ValueError, match="invalid rate limit"):

        @shared_task(rate_limit="fast")
        def too_fast():
            pass

    with pytest.warns(UserWarning, match="acks_late=False is not supported"):

        @shared_task(acks_late=False)
        def early_ack():
            pass


def test_calling_a_bound_shared_task_inline_needs_no_app(tasks, r):
    assert tasks.add(2, 3) == 5

    @shared_task(bind=True)
    def steps(self):
        self.update_state(state="PROGRESS", meta={"current": 1})  # nothing to report to
        return self.request.id

    assert steps() == ""
    assert r.keys("*") == []


# -- sending -------------------------------------------------------------------------------


def test_delay_uses_the_taskqueue_of_the_current_app(tasks, redis_url, r):
    alpha = make_app(redis_url, "alpha", TASKQ_TASK_DEFAULT_PRIORITY=8)
    beta = make_app(redis_url, "beta")

    with alpha.app_context():
        sent_alpha = tasks.add.delay(1, 2)
        assert tasks.add.for_app() is alpha.extensions["taskq"].taskqueue.tasks[tasks.add.name]
    with beta.app_context():
        sent_beta = tasks.add.apply_async((3, 4), queue="other", priority=1)

    [(_, alpha_fields)] = r.xrange("alpha:{default}:p8")
    [(_, beta_fields)] = r.xrange("beta:{other}:p1")
    assert Message.from_bytes(alpha_fields["m"].encode(), JSONSerializer()).id == sent_alpha.id
    assert Message.from_bytes(beta_fields["m"].encode(), JSONSerializer()).id == sent_beta.id
    assert tasks.add.for_app(beta) is not tasks.add.for_app(alpha)


def test_delay_outside_an_app_context_with_two_apps_bound_is_a_runtime_error(tasks, redis_url):
    make_app(redis_url, "alpha")
    make_app(redis_url, "beta")

    with pytest.raises(RuntimeError, match="push an app context"):
        tasks.add.delay(1, 2)
    with pytest.raises(RuntimeError, match="push an app context"):
        tasks.add.apply_async((1, 2))
    with pytest.raises(RuntimeError, match="push an app context"):
        AsyncResult("some-id")


def test_send_task_by_name_uses_the_config_defaults(redis_url, r):
    app = make_app(redis_url, "defaults", TASKQ_TASK_DEFAULT_PRIORITY=7, TASKQ_TASK_EXPIRES=60)
    tq = app.extensions["taskq"].taskqueue

    with app.app_context():
        before = time.time()
        tq.send_task("elsewhere.task")

    [(_, fields)] = r.xrange("defaults:{default}:p7")
    message = Message.from_bytes(fields["m"].encode(), JSONSerializer())
    assert before + 60 <= message.expires <= time.time() + 60


# -- running -------------------------------------------------------------------------------


def test_two_apps_each_run_the_shared_task_with_their_own_config(tasks, redis_url, r, start_worker):
    configs = {
        "alpha": {"TASKQ_TASK_DEFAULT_PRIORITY": 8, "TASKQ_TASK_MAX_RETRIES": 1},
        "beta": {"TASKQ_TASK_DEFAULT_PRIORITY": 3, "TASKQ_TASK_IGNORE_RESULT": True},
    }
    apps = {label: make_app(redis_url, label, **config) for label, config in configs.items()}
    for label, config in configs.items():
        start_worker("-P", "solo", app=APP, env=worker_env(label, **config))

    results = {}
    for label, app in apps.items():
        with app.app_context():
            results[label] = tasks.where.delay()
            tasks.report.delay(label)

    with apps["alpha"].app_context():
        assert results["alpha"].get(timeout=20) == {"label": "alpha", "prefix": "alpha"}
    reports = seen(r, 2)
    assert (reports["alpha"]["label"], reports["beta"]["label"]) == ("alpha", "beta")
    assert (reports["alpha"]["priority"], reports["beta"]["priority"]) == (8, 3)
    assert (reports["alpha"]["max_retries"], reports["beta"]["max_retries"]) == (1, 3)
    assert (reports["alpha"]["ignore_result"], reports["beta"]["ignore_result"]) == (False, True)
    with apps["beta"].app_context():
        assert results["beta"].state == "PENDING"  # beta keeps no results by default


def test_worker_applies_the_config_defaults_and_a_tasks_own_options_win(
    tasks, redis_url, r, start_worker
):
    config = {
        "TASKQ_TASK_IGNORE_RESULT": True,
        "TASKQ_TASK_ACKS_LATE": True,
        "TASKQ_TASK_TIME_LIMIT": 30,
        "TASKQ_TASK_SOFT_TIME_LIMIT": 20,
        "TASKQ_TASK_DEFAULT_RATE_LIMIT": "500/s",
        "TASKQ_TASK_DEFAULT_PRIORITY": 7,
        "TASKQ_TASK_EXPIRES": 300,
        "TASKQ_TASK_MAX_RETRIES": 1,
        "TASKQ_TASK_DEFAULT_RETRY_DELAY": 0,
        "TASKQ_TASK_RETRY_BACKOFF": False,
        "TASKQ_TASK_RETRY_BACKOFF_MAX": 90,
        "TASKQ_TASK_RETRY_JITTER": True,
    }
    app = make_app(redis_url, "conf", **config)
    worker = start_worker("-P", "solo", app=APP, env=worker_env("conf", **config))

    with app.app_context():
        by_default = tasks.report.delay("default")
        own = tasks.report_own.delay("own")
        flaky = tasks.flaky.delay("flaky")
        flaky_own = tasks.flaky_own.delay("flaky_own")

        assert own.get(timeout=20)["token"] == "own"
        assert by_default.state == "PENDING", worker.log  # ignore_result from the config
        with pytest.raises(LookupError):
            flaky.get(timeout=20)
        with pytest.raises(LookupError):
            flaky_own.get(timeout=20)

    reports = seen(r, 2)
    assert reports["default"] == {
        "token": "default",
        "label": "conf",
        "ignore_result": True,
        "max_retries": 1,
        "priority": 7,
        "acks_late": True,
        "time_limit": 30,
        "soft_time_limit": 20,
        "rate_limit": "500/s",
        "default_retry_delay": 0,
        "retry_backoff": False,
        "retry_backoff_max": 90,
        "retry_jitter": True,
        "expires": 300,
    }
    assert reports["own"] == {
        "token": "own",
        "label": "conf",
        "ignore_result": False,
        "max_retries": 5,
        "priority": 2,
        "acks_late": True,
        "time_limit": 50,
        "soft_time_limit": 40,
        "rate_limit": "1000/s",
        "default_retry_delay": 7,
        "retry_backoff": 3,
        "retry_backoff_max": 30,
        "retry_jitter": False,
        "expires": 600,
    }
    # TASKQ_TASK_MAX_RETRIES=1: one retry; flaky_own says max_retries=3.
    assert r.hgetall("test:runs") == {"flaky": "2", "flaky_own": "4"}


def test_one_taskqueue_serves_apps_with_different_defaults():
    tq = TaskQueue()

    @shared_task(bind=True)
    def shared_options(self):
        return {
            "max_retries": self.max_retries,
            "ignore_result": self.ignore_result,
            "priority": self.request.priority,
        }

    @tq.task(bind=True, max_retries=9)
    def own_options(self):
        return {
            "max_retries": self.max_retries,
            "ignore_result": self.ignore_result,
            "priority": self.request.priority,
        }

    apps = []
    for retries, priority in ((1, 8), (4, 2)):
        app = Flask(f"eager{retries}")
        app.config.update(
            TASKQ_BROKER_URL=NO_REDIS,
            TASKQ_ALWAYS_EAGER=True,
            TASKQ_TASK_MAX_RETRIES=retries,
            TASKQ_TASK_DEFAULT_PRIORITY=priority,
            TASKQ_TASK_IGNORE_RESULT=True,
        )
        tq.init_app(app)
        apps.append(app)

    answers = []
    for app in apps:
        with app.app_context():
            answers.append((shared_options.delay().get(), own_options.delay().get()))
    assert answers == [
        (
            {"max_retries": 1, "ignore_result": True, "priority": 8},
            {"max_retries": 9, "ignore_result": True, "priority": 8},
        ),
        (
            {"max_retries": 4, "ignore_result": True, "priority": 2},
            {"max_retries": 9, "ignore_result": True, "priority": 2},
        ),
    ]
    assert own_options.max_retries == 9  # outside any app: its own option
    assert shared_options.max_retries == 3  # outside any app: the built-in default


# -- configuration -------------------------------------------------------------------------


def test_task_default_keys_are_known_settings():
    app = Flask("known")
    app.config.update(
        TASKQ_BROKER_URL=NO_REDIS,
        TASKQ_TASK_IGNORE_RESULT=True,
        TASKQ_TASK_ACKS_LATE=True,
        TASKQ_TASK_TIME_LIMIT=10,
        TASKQ_TASK_SOFT_TIME_LIMIT=5,
        TASKQ_TASK_DEFAULT_RATE_LIMIT="1/s",
        TASKQ_TASK_DEFAULT_PRIORITY=0,
        TASKQ_TASK_EXPIRES=5,
        TASKQ_TASK_MAX_RETRIES=None,
        TASKQ_TASK_DEFAULT_RETRY_DELAY=1,
        TASKQ_TASK_RETRY_BACKOFF=2,
        TASKQ_TASK_RETRY_BACKOFF_MAX=10,
        TASKQ_TASK_RETRY_JITTER=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TaskQueue(app)


def test_a_misspelt_task_default_key_warns_with_the_right_one():
    app = Flask("misspelt")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_TASK_IGNORE_RESULTS=True)
    with pytest.warns(UserWarning, match="did you mean TASKQ_TASK_IGNORE_RESULT"):
        TaskQueue(app)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("TASKQ_TASK_DEFAULT_RATE_LIMIT", "often", "TASKQ_TASK_DEFAULT_RATE_LIMIT: invalid"),
        ("TASKQ_TASK_DEFAULT_PRIORITY", 10, "integer from 0 to 9"),
        ("TASKQ_TASK_DEFAULT_PRIORITY", None, "integer from 0 to 9"),
    ],
)
def test_a_bad_task_default_fails_at_init_app(key, value, match):
    app = Flask("bad")
    app.config.update({"TASKQ_BROKER_URL": NO_REDIS, key: value})
    with pytest.raises(ValueError, match=match):
        TaskQueue(app)


def test_acks_late_false_warns_that_it_is_not_supported():
    app = Flask("early")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_TASK_ACKS_LATE=False)
    with pytest.warns(UserWarning, match="TASKQ_TASK_ACKS_LATE = False: acks_late=False is"):
        TaskQueue(app)


def test_two_apps_from_one_factory_send_to_their_own_redis_database(tasks, redis_url):
    """The same shared task sent in each app's context lands in that app's database."""
    base = redis_url.rsplit("/", 1)[0]
    apps = [create_app({"TASKQ_BROKER_URL": f"{base}/{db}"}) for db in (1, 2)]
    for db, app in zip((1, 2), apps, strict=True):
        redis.Redis.from_url(f"{base}/{db}").flushdb()
        with app.app_context():
            tasks.add.delay(db, db)
    for db in (1, 2):
        client = redis.Redis.from_url(f"{base}/{db}")
        [(_, fields)] = client.xrange("taskq:{default}:p5")
        assert Message.from_bytes(fields[b"m"], JSONSerializer()).args == (db, db)


def test_delay_many_uses_the_taskqueue_of_the_current_app(tasks, redis_url, r):
    alpha = make_app(redis_url, "alpha")
    with alpha.app_context():
        sent = tasks.add.delay_many([(1, 2), (3, 4)])
        sent += tasks.add.apply_many([((5,), {"y": 6})], queue="other")
    ids = [
        Message.from_bytes(f["m"].encode(), JSONSerializer()).id
        for key in ("alpha:{default}:p5", "alpha:{other}:p5")
        for _, f in r.xrange(key)
    ]
    assert ids == [res.id for res in sent]
