"""The quickstart example (examples/quickstart): its views with a real worker, and its demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest
from flask import Flask

from examples.quickstart.app import add, create_app, word_count
from tests.conftest import ROOT, free_port, wait_until

QUICKSTART = "examples.quickstart.app:create_app"


@pytest.fixture
def quickstart_app(redis_url: str) -> Flask:
    """The quickstart app on the test Redis."""
    app = create_app({"TASKQ_BROKER_URL": redis_url})
    app.testing = True
    return app


def _wait_for_result(client, task_id: str) -> dict:
    def ready():
        answer = client.get(f"/result/{task_id}")
        assert answer.status_code == 200
        return answer.json if answer.json["ready"] else None

    return wait_until(ready, timeout=15, message=f"task {task_id} to be ready")


def test_tasks_run_inline_when_called() -> None:
    assert add(2, 3) == 5
    assert word_count("To be, or not to be") == {
        "words": 6,
        "most_common": [("to", 2), ("be", 2), ("or", 1)],
    }


def test_create_app_reads_the_broker_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    assert create_app().config["TASKQ_BROKER_URL"] == redis_url
    monkeypatch.delenv("TASKQ_BROKER_URL")
    assert create_app().config["TASKQ_BROKER_URL"] == "redis://localhost:6379/0"


def test_add_runs_on_a_real_worker(quickstart_app: Flask, start_worker) -> None:
    worker = start_worker("-P", "solo", app=QUICKSTART)
    client = quickstart_app.test_client()

    answer = client.post("/add", json={"x": 2, "y": 3})
    assert answer.status_code == 202
    task_id = answer.json["task_id"]

    result = _wait_for_result(client, task_id)
    assert result == {"state": "SUCCESS", "ready": True, "successful": True, "value": 5}, worker.log


def test_form_input_and_word_count_on_a_real_worker(quickstart_app: Flask, start_worker) -> None:
    start_worker("-P", "solo", app=QUICKSTART)
    client = quickstart_app.test_client()

    added = client.post("/add", data={"x": "1.5", "y": "2"})
    counted = client.post("/word-count", data={"text": "the cat and the hat"})
    assert (added.status_code, counted.status_code) == (202, 202)

    assert _wait_for_result(client, added.json["task_id"])["value"] == 3.5
    value = _wait_for_result(client, counted.json["task_id"])["value"]
    assert value == {"words": 5, "most_common": [["the", 2], ["cat", 1], ["and", 1]]}


def test_a_failed_task_reports_its_error(quickstart_app: Flask, start_worker) -> None:
    start_worker("-P", "solo", app=QUICKSTART)
    with quickstart_app.app_context():
        task_id = add.delay("two", 3).id  # the views validate input; .delay() does not

    result = _wait_for_result(quickstart_app.test_client(), task_id)
    assert result["state"] == "FAILURE"
    assert result["successful"] is False
    assert result["value"].startswith("TypeError: ")


def test_result_of_an_unknown_task_is_pending(quickstart_app: Flask) -> None:
    answer = quickstart_app.test_client().get(f"/result/{uuid.uuid4()}")
    assert answer.status_code == 200
    assert answer.json == {"state": "PENDING", "ready": False, "successful": False, "value": None}


@pytest.mark.parametrize(
    "payload",
    [
        {"x": 2},
        {"x": "two", "y": 3},
        {"x": True, "y": 3},
        {"x": [1], "y": 3},
    ],
)
def test_add_rejects_bad_input(quickstart_app: Flask, payload: dict) -> None:
    answer = quickstart_app.test_client().post("/add", json=payload)
    assert answer.status_code == 400
    assert answer.json["error"].endswith("must be a number")


def test_word_count_requires_text(quickstart_app: Flask) -> None:
    answer = quickstart_app.test_client().post("/word-count", json={"text": 42})
    assert answer.status_code == 400


def _run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "examples/quickstart/demo.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_with_the_given_broker(redis_url: str) -> None:
    done = _run_demo({**os.environ, "TASKQ_BROKER_URL": redis_url})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"using Redis at {redis_url}" in done.stdout
    assert re.search(r"enqueued add\(2, 3\) as [0-9a-f-]{36}", done.stdout), output
    assert re.search(r"result: SUCCESS 5 after \d+\.\d+ s", done.stdout), output
    assert "worker stopped gracefully on SIGTERM (exit code 0)" in done.stdout
    assert done.stdout.rstrip().endswith("demo OK")


def test_demo_starts_its_own_redis() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TASKQ_BROKER_URL"}
    done = _run_demo(env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    port = re.search(r"started a throwaway redis-server on port (\d+)", done.stdout)
    assert port and port.group(1) != "6379", output
    assert "result: SUCCESS 5" in done.stdout


def test_demo_fails_clearly_without_redis() -> None:
    unused = f"redis://127.0.0.1:{free_port()}/0"
    done = _run_demo({**os.environ, "TASKQ_BROKER_URL": unused})
    assert done.returncode == 1
    assert done.stderr.strip() == f"demo failed: cannot reach Redis at TASKQ_BROKER_URL={unused}"
