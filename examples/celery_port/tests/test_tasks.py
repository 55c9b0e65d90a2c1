"""The example's own tests: its views with tasks run eagerly, and with a real worker on a
thread of the test process (``flask_taskq.testing``)."""

from __future__ import annotations

import time


def start(client, path, **form):
    response = client.post(f"/tasks/{path}", data=form)
    assert response.status_code == 200
    return response.get_json()["result_id"]


def result(client, result_id):
    return client.get(f"/tasks/result/{result_id}").get_json()


def test_add_runs_inline_in_eager_mode(taskq_eager, client):
    result_id = start(client, "add", a=20, b=22)
    assert result(client, result_id) == {"ready": True, "successful": True, "value": 42}


def test_add_on_a_real_worker(taskq_worker, client):
    result_id = start(client, "add", a=1, b=2)
    taskq_worker.drain()
    assert result(client, result_id) == {"ready": True, "successful": True, "value": 3}


def test_process_reports_progress_then_succeeds(taskq_worker, client):
    result_id = start(client, "process", total=2)
    seen = []
    deadline = time.monotonic() + 20
    while not (body := result(client, result_id))["ready"]:
        assert time.monotonic() < deadline, "process did not finish"
        if body["value"] and body["value"] not in seen:
            seen.append(body["value"])
        time.sleep(0.05)
    assert body == {"ready": True, "successful": True, "value": {"current": 2, "total": 2}}
    assert {"current": 1, "total": 2} in seen


def test_result_of_an_unknown_task_is_not_ready(client, app):
    assert result(client, "nope") == {"ready": False, "successful": None, "value": None}
