"""Issue 17 with real workers: an app laid out as a Flask+Celery app
(``tests.apps.migration_app``: a standalone ``TaskQueue()`` bound in the factory,
Celery's upper-case config keys, a tasks module imported lazily, Celery routes and
Celery-style signal receivers) runs on ``flask taskq worker`` unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
from flask import Flask

from tests.conftest import ROOT, WorkerProcess, wait_until

APP = "tests.apps.migration_app:create_app"


@pytest.fixture
def mig_app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.migration_app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_app()


def test_status_poll_with_task_async_result_of_a_lazily_imported_bound_task(start_worker, mig_app):
    """Items 1, 3, 5, 8: the worker reads CELERY_BROKER_URL, imports the tasks module
    named by CELERY_IMPORTS, runs the bound task with ``self``, and the view polls
    ``long_task.AsyncResult(id)``."""
    start_worker("-P", "solo", app=APP)
    client = mig_app.test_client()
    task_id = client.post("/long/3").get_json()["id"]

    def done():
        body = client.get(f"/long/{task_id}").get_json()
        return body if body["state"] == "SUCCESS" else None

    body = wait_until(done, message="long_task SUCCESS")
    assert body["info"] == {"id": task_id, "total": 3, "label": "migration"}


def test_an_unknown_task_is_dead_lettered_naming_taskq_imports(start_worker, mig_app):
    """Item 5: the dead-letter reason points at TASKQ_IMPORTS."""
    start_worker("-P", "solo", app=APP)
    from tests.apps.migration_app import tq

    with mig_app.app_context():
        task_id = tq.send_task("tests.apps.elsewhere.forgotten").id
    broker = mig_app.extensions["taskq"].broker
    rows = wait_until(lambda: broker.dead_letters("default"), message="a dead letter")
    assert rows[0]["id"] == task_id
    assert rows[0]["reason"] == (
        "task 'tests.apps.elsewhere.forgotten' is not registered "
        "in this worker (is its module in TASKQ_IMPORTS?)"
    )


def test_a_module_in_taskq_imports_that_cannot_be_imported_stops_the_worker(redis_url):
    """Item 5: one line naming the module, exit status 1, for the worker and beat."""
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": redis_url,
        "FLASK_TASKQ_IMPORTS": '["tests.apps.no_such_module"]',
    }
    for command in (["worker", "-P", "solo"], ["beat"]):
        proc = subprocess.run(
            [sys.executable, "-m", "flask", "--app", APP, "taskq", *command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert errors == [
            "Error: TASKQ_IMPORTS: cannot import 'tests.apps.no_such_module': "
            "No module named 'tests.apps.no_such_module'"
        ], proc.stderr
        assert "Traceback" not in proc.stderr


def test_beat_imports_taskq_imports_and_sends_their_periodic_tasks(redis_url, r):
    """Item 5: a periodic task declared in a module that only TASKQ_IMPORTS names."""
    env = {**os.environ, "TASKQ_BROKER_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    beat = WorkerProcess(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "beat", "-l", "info"], env
    )
    try:

        def sent() -> bool:
            entries = r.xrange("taskq:{default}:p5")
            return any("tests.apps.migration_tasks.pulse" in str(fields) for _, fields in entries)

        wait_until(sent, timeout=15, message="beat sending the pulse task")
    finally:
        beat.kill_group()


def test_celery_routes_a_glob_and_a_router_function_on_a_worker(start_worker, mig_app):
    """Item 6: CELERY_TASK_ROUTES, a tuple of a dict and a router function, routes the
    tasks to queues that a worker consuming only those queues runs."""
    from tests.apps import migration_tasks

    start_worker("-P", "solo", "-Q", "mail,urgent", app=APP)
    with mig_app.app_context():
        mail = migration_tasks.mail_welcome.delay("ann")
        urgent = migration_tasks.deliver.delay("urgent", "x")
        assert mail.get(timeout=15) == "welcome ann"
        assert urgent.get(timeout=15) == "urgent:x"


def test_celery_style_signal_receivers_run_in_the_worker(start_worker, mig_app, r):
    """Item 4: receivers written for Celery run; one that raises is logged by name."""
    from tests.apps import migration_tasks

    worker = start_worker("-P", "solo", app=APP, env={"TASKQ_CELERY_RECEIVERS": "1"})
    with mig_app.app_context():
        result = migration_tasks.deliver.delay("normal", "y")
        assert result.get(timeout=15) == "normal:y"
    name = "tests.apps.migration_tasks.deliver"
    wait_until(lambda: r.llen("test:signals") >= 3, message="three signals recorded")
    assert sorted(r.lrange("test:signals", 0, -1)) == sorted(
        [
            f"prerun {name} {result.id} ['normal', 'y']",
            f"success {name} normal:y",
            f"postrun {result.id} SUCCESS",
        ]
    )
    worker.wait_for_log("Receiver tests.apps.migration_app.exploding of signal task-prerun raised")
