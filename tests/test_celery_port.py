"""examples/celery_port: the shape of Flask's Celery example (app factory, shared tasks, a
blueprint reading ``AsyncResult(id)``) on flask-taskq, through its views with the Flask
test client and a real worker (SPEC section 9)."""

from __future__ import annotations

import ast
import re

import pytest
from flask import Flask

from examples.celery_port import create_app
from tests.apps.shared_app import isolated_shared_tasks
from tests.conftest import ROOT, wait_until

APP = "examples.celery_port:create_app"
EXAMPLE = ROOT / "examples" / "celery_port"


@pytest.fixture(autouse=True)
def tasks():
    with isolated_shared_tasks("examples.celery_port.tasks") as [module]:
        yield module


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """What points the example at the test Redis, as a user would set it."""
    return {"FLASK_TASKQ_BROKER_URL": redis_url, "FLASK_TASKQ_RESULT_BACKEND": redis_url}


@pytest.fixture
def app(tasks, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Flask:
    # Depends on ``tasks``: pytest-flask's autouse fixtures build ``app`` before this
    # module's own autouse fixtures, and the tasks must be defined inside the isolation.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = create_app()
    app.testing = True
    return app


def start(client, path: str, **form) -> str:
    answer = client.post(path, data=form)
    assert answer.status_code == 200, answer.text
    return answer.json["result_id"]


def result(client, task_id: str) -> dict:
    answer = client.get(f"/tasks/result/{task_id}")
    assert answer.status_code == 200, answer.text
    return answer.json


def test_the_views_run_the_tasks_on_a_real_worker(app, env, start_worker, r):
    worker = start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    client = app.test_client()

    add_id = start(client, "/tasks/add", a=2, b=3)
    block_id = start(client, "/tasks/block")
    process_id = start(client, "/tasks/process", total=3)

    added = wait_until(
        lambda: (answer := result(client, add_id))["ready"] and answer,
        timeout=30,
        message="add to be ready",
    )
    assert added == {"ready": True, "successful": True, "value": 5}

    observed = []

    def process_ready():
        answer = result(client, process_id)
        observed.append(answer)
        return answer["ready"] and answer

    done = wait_until(process_ready, timeout=30, message="process to be ready")
    assert done == {"ready": True, "successful": True, "value": {"current": 3, "total": 3}}
    # While it runs, a result is STARTED (its info: worker and start time, as Celery's with
    # task_track_started) or PROGRESS (the task's own meta).
    progress = [
        a["value"]
        for a in observed
        if not a["ready"] and a["value"] is not None and "current" in a["value"]
    ]
    assert all(
        "current" in a["value"] or "hostname" in a["value"]
        for a in observed
        if not a["ready"] and a["value"] is not None
    ), observed
    assert progress, "no PROGRESS seen while process ran"
    assert {"current": 1, "total": 3} in progress, progress
    assert all(a["successful"] is None for a in observed if not a["ready"])
    assert [p["current"] for p in progress] == sorted(p["current"] for p in progress)

    worker.wait_for_log(f"examples.celery_port.tasks.block[{block_id}] succeeded", timeout=30)
    assert result(client, block_id) == {"ready": False, "successful": None, "value": None}
    assert r.exists(f"taskq:result:{{{block_id}}}") == 0  # TASKQ_TASK_IGNORE_RESULT


def test_result_of_a_task_not_run_yet(app):
    assert result(app.test_client(), "not-a-task") == {
        "ready": False,
        "successful": None,
        "value": None,
    }


def test_the_index_page_drives_every_view(app):
    page = app.test_client().get("/")

    assert page.status_code == 200
    for path in ("/tasks/add", "/tasks/block", "/tasks/process", "/tasks/result/"):
        assert path in page.text


def test_tasks_and_views_know_no_taskqueue():
    """The modules a Celery user ports import only Celery's names from flask_taskq."""
    for module, names in (("tasks.py", {"Task", "shared_task"}), ("views.py", {"AsyncResult"})):
        tree = ast.parse((EXAMPLE / module).read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "flask_taskq"
            for alias in node.names
        }
        assert imported == names, module


def test_the_readme_diff_matches_the_example():
    """Every line the README's diff adds is in the example, and no removed one is."""
    readme = (EXAMPLE / "README.md").read_text()
    diffs = re.findall(r"```diff\n(.*?)```", readme, flags=re.S)
    source = {
        line.strip() for path in EXAMPLE.glob("*.py") for line in path.read_text().splitlines()
    }
    lines = [
        line
        for diff in diffs
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(lines) > 10
    for line in lines:
        present = line[1:].strip() in source
        assert present == line.startswith("+"), line


def test_the_tasks_run_inline_and_eagerly(monkeypatch, tasks):
    assert tasks.add(2, 3) == 5
    monkeypatch.setenv("FLASK_TASKQ_ALWAYS_EAGER", "true")
    monkeypatch.setenv("FLASK_TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app = create_app()
    with app.app_context():
        assert tasks.add.delay(4, 5).get() == 9
