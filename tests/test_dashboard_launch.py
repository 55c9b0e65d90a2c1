"""Workflows from the dashboard (issue 18, item 3): workflow templates declared in code,
the Launch page, revoking a whole workflow and retrying a failed one from its failed
steps (the dashboard's buttons and ``flask taskq workflow retry``), each behind the
dashboard's auth and CSRF and logged with who did it.

Through Flask's test client on the test redis-server, with real ``flask taskq worker``
processes running this module's app (``tests.test_dashboard_launch:create_app``); the
browser test is ``tests/test_dashboard_launch_e2e.py``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
import uuid

import pytest
import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue, states, workflow_graph
from flask_taskq.canvas import chain, group
from flask_taskq.workflow_templates import TemplateError
from tests.conftest import wait_until

tq = TaskQueue()
USER, PASSWORD = "operator", "launch pass"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
WORKER_APP = "tests.test_dashboard_launch:create_app"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def add(x, y):
    return x + y


@tq.task
def step(x, tag):
    """Counts its runs in ``test:runs:<tag>``; a tag starting with ``bad`` fails until
    ``test:fixed:<tag>`` is set. Returns ``x + 1``."""
    client = _redis()
    client.incr(f"test:runs:{tag}")
    if tag.startswith("bad") and not client.exists(f"test:fixed:{tag}"):
        raise ValueError(f"{tag} is broken")
    return (x or 0) + 1


@tq.task
def total(values):
    return sum(values)


@tq.task
def nap(seconds, token):
    """Sets ``test:started:<token>``, then sleeps."""
    _redis().set(f"test:started:{token}", 1)
    time.sleep(seconds)
    return seconds


# -- templates: a canvas (launch arguments go to its first task) and a function ------------
tq.workflow("add-chain", chain(add.s(1), add.s(10)), description="x + 1 + 10")


@tq.workflow("report")
def report(day: str, broken: str | None = None):
    """One step, three in parallel, their total, one more step."""
    return chain(
        step.s(0, f"first-{day}"),
        group(step.s(f"g1-{day}"), step.s(broken or f"g2-{day}"), step.s(f"g3-{day}")),
        total.s(),
        step.s(f"last-{day}"),
    )


@tq.workflow("slow")
def slow(seconds: float, token: str = ""):
    """A nap, then two additions."""
    return chain(nap.s(seconds, token), add.s(1), add.s(2))


@tq.workflow("single")
def single(x: int):
    return add.s(x, x)


def create_app(**config) -> Flask:
    """This module's app; workers start it from ``TASKQ_BROKER_URL``."""
    app = Flask("launch")
    app.config.update(
        TASKQ_BROKER_URL=os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0"),
        TASKQ_DASHBOARD=True,
        TASKQ_DASHBOARD_AUTH=(USER, PASSWORD),
    )
    app.config.update(config)
    tq.init_app(app)
    return app


@pytest.fixture
def dash(redis_url):
    return create_app(TASKQ_BROKER_URL=redis_url)


@pytest.fixture
def client(dash):
    return dash.test_client()


@pytest.fixture
def worker(start_worker):
    return start_worker("-P", "threads", "-c", "4", app=WORKER_APP)


def token(client, headers=AUTH):
    page = client.get("/taskq/launch", headers=headers)
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found
    return found.group(1)


def launch(client, headers=AUTH, **fields):
    form = {"csrf_token": token(client, headers), **fields}
    return client.post("/taskq/launch", data=form, headers=headers)


def action(client, workflow_id, what):
    form = {"csrf_token": token(client)}
    return client.post(f"/taskq/workflows/{workflow_id}/{what}", data=form, headers=AUTH)


def runs(r, tag):
    return int(r.get(f"test:runs:{tag}") or 0)


def task_states(app, workflow_id):
    state = app.extensions["taskq"]
    doc = workflow_graph.with_states(state, workflow_graph.load(state, workflow_id))
    return [
        (n["task"].rsplit(".", 1)[-1], n["state"]) for n in workflow_graph.task_nodes(doc["tree"])
    ]


def finished(app, workflow_id):
    found = task_states(app, workflow_id)
    return found if all(s in states.READY_STATES for _, s in found) else None


def nothing_sent(app):
    state = app.extensions["taskq"]
    return state.broker.queue_length("default") == 0 and not workflow_graph.recent(state)


# -- templates in Python ---------------------------------------------------------------------
def test_templates_are_listed_with_their_parameters():
    names = [t.name for t in tq.workflows]
    assert names == ["add-chain", "report", "single", "slow"]
    assert tq.workflows.get("report").parameters == "(day: str, broken: str | None = None)"
    assert tq.workflows.get("report").description.startswith("One step, three in parallel")
    assert tq.workflows.get("add-chain").description == "x + 1 + 10"
    with pytest.raises(TemplateError, match="missing a required argument: 'day'"):
        tq.workflows.get("report").build([], {})
    with pytest.raises(TemplateError, match="unexpected keyword argument 'month'"):
        tq.workflows.get("report").build([], {"day": "x", "month": 1})
    with pytest.raises(TemplateError, match="unknown workflow template 'nope'"):
        tq.workflows.get("nope")
    with pytest.raises(TypeError):
        tq.workflow("bad", 42)


def test_launch_from_python_in_eager_mode():
    app = create_app(TASKQ_BROKER_URL="memory://", TASKQ_ALWAYS_EAGER=True)
    with app.app_context():
        assert tq.workflows.launch("add-chain", [2]).get(timeout=5) == 13


# -- the launch form -------------------------------------------------------------------------
def test_launch_page_lists_templates_and_tasks(client):
    page = client.get("/taskq/launch", headers=AUTH)
    assert page.status_code == 200
    assert 'data-template="report"' in page.text
    assert "(day: str, broken: str | None = None)" in page.text
    assert "tests.test_dashboard_launch.add" in page.text
    assert 'href="/taskq/launch"' in client.get("/taskq/", headers=AUTH).text  # nav link


def test_launch_a_task_and_a_template_from_the_form(dash, client, worker, r, caplog):
    caplog.set_level(logging.INFO, "flask_taskq.dashboard")
    sent = launch(client, kind="task", name="tests.test_dashboard_launch.add", args="[2, 3]")
    assert sent.status_code == 303
    task_id = sent.headers["Location"].rsplit("/", 1)[-1]
    assert sent.headers["Location"] == f"/taskq/task/{task_id}"
    with dash.app_context():
        assert tq.AsyncResult(task_id).get(timeout=10) == 5
    assert f"user '{USER}' from 127.0.0.1 launched task tests.test_dashboard_launch.add" in (
        caplog.text
    )

    day = uuid.uuid4().hex[:8]
    sent = launch(client, kind="template", name="report", kwargs=f'{{"day": "{day}"}}')
    assert sent.status_code == 303, sent.text
    assert sent.headers["Location"].startswith("/taskq/workflows/")
    workflow_id = sent.headers["Location"].rsplit("/", 1)[-1]
    page = client.get(sent.headers["Location"], headers=AUTH)
    assert "Launched workflow template" in page.text
    assert 'id="revoke-workflow"' in page.text and 'id="retry-workflow"' in page.text
    with dash.app_context():
        # 0 -> 1 -> three times 2 -> 6 -> 7
        assert tq.AsyncResult(workflow_id).get(timeout=15) == 7
    assert f"launched workflow template 'report' as workflow {workflow_id}" in caplog.text

    # a canvas template: the arguments go to its first task; a one-task template opens
    # the task's page
    sent = launch(client, kind="template", name="add-chain", args="[2]")
    with dash.app_context():
        assert tq.AsyncResult(sent.headers["Location"].rsplit("/", 1)[-1]).get(timeout=10) == 13
    sent = launch(client, kind="template", name="single", kwargs='{"x": 4}')
    assert sent.headers["Location"].startswith("/taskq/task/")
    with dash.app_context():
        assert tq.AsyncResult(sent.headers["Location"].rsplit("/", 1)[-1]).get(timeout=10) == 8


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"kind": "task", "name": "tests.test_dashboard_launch.add", "args": "[1, "},
            "args: not valid JSON",
        ),
        (
            {"kind": "task", "name": "tests.test_dashboard_launch.add", "args": '{"x": 1}'},
            "args: give a JSON list",
        ),
        ({"kind": "template", "name": "report", "kwargs": "[1]"}, "kwargs: give a JSON object"),
        ({"kind": "task", "name": "no.such.task"}, "unknown task &#39;no.such.task&#39;"),
        (
            {"kind": "task", "name": "tests.test_dashboard_launch.add", "args": "[1]"},
            "wrong arguments for task",
        ),
        (
            {"kind": "template", "name": "no-such-template"},
            "unknown workflow template &#39;no-such-template&#39;",
        ),
        (
            {"kind": "template", "name": "report", "kwargs": '{"month": 1}'},
            "wrong parameters for workflow &#39;report&#39;",
        ),
        ({"kind": "", "name": "x"}, "choose what to launch"),
        ({"kind": "task", "name": ""}, "give the name of the task"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_nothing_is_sent(dash, client, fields, error):
    answer = launch(client, **fields)
    assert answer.status_code == 400
    assert 'id="launch-error"' in answer.text
    assert error in answer.text
    # what was typed stays in the form
    assert f'value="{fields["name"]}"' in answer.text
    assert nothing_sent(dash)


def test_launch_needs_the_csrf_token(dash, client):
    fields = {"kind": "task", "name": "tests.test_dashboard_launch.add", "args": "[1, 2]"}
    answer = client.post("/taskq/launch", data=fields, headers=AUTH)
    assert answer.status_code == 400
    assert "CSRF token" in answer.text
    token(client)  # the cookie is set; a forged token is still refused
    answer = client.post("/taskq/launch", data={**fields, "csrf_token": "x" * 43}, headers=AUTH)
    assert answer.status_code == 400
    for what in ("revoke", "retry"):
        answer = client.post(f"/taskq/workflows/some-id/{what}", data={}, headers=AUTH)
        assert answer.status_code == 400
    assert nothing_sent(dash)


def test_the_auth_hook_guards_every_action(redis_url):
    app = create_app(TASKQ_BROKER_URL=redis_url)
    client = app.test_client()
    wrong = {"Authorization": "Basic " + base64.b64encode(b"operator:nope").decode()}
    assert client.get("/taskq/launch", headers=wrong).status_code == 401
    fields = {"kind": "task", "name": "tests.test_dashboard_launch.add", "args": "[1, 2]"}
    assert client.post("/taskq/launch", data=fields, headers=wrong).status_code == 401
    for what in ("revoke", "retry"):
        assert client.post(f"/taskq/workflows/x/{what}", headers=wrong).status_code == 401

    denied = create_app(
        TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD_AUTH=lambda request: False
    ).test_client()
    assert denied.get("/taskq/launch").status_code == 403
    assert denied.post("/taskq/launch", data=fields).status_code == 403
    assert nothing_sent(app)


def test_an_auth_callable_names_the_user_in_the_log(redis_url, caplog):
    caplog.set_level(logging.INFO, "flask_taskq.dashboard")
    app = create_app(TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD_AUTH=lambda request: "alice")
    client = app.test_client()
    answer = launch(client, headers={}, kind="task", name="no.such.task")
    assert answer.status_code == 400
    assert "user 'alice' from 127.0.0.1: launch of task 'no.such.task' refused" in caplog.text


# -- revoke and retry ------------------------------------------------------------------------
def test_revoke_a_running_workflow(dash, client, worker, r, caplog):
    caplog.set_level(logging.INFO, "flask_taskq.dashboard")
    token_ = uuid.uuid4().hex
    sent = launch(
        client, kind="template", name="slow", kwargs=f'{{"seconds": 2, "token": "{token_}"}}'
    )
    workflow_id = sent.headers["Location"].rsplit("/", 1)[-1]
    wait_until(lambda: r.exists(f"test:started:{token_}"), message="the nap running")
    page = client.get(action(client, workflow_id, "retry").headers["Location"], headers=AUTH)
    assert "has not finished" in page.text  # a running workflow is not retried
    answer = action(client, workflow_id, "revoke")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/taskq/workflows/{workflow_id}"
    assert (
        "Revoked 3 unfinished task(s)" in client.get(answer.headers["Location"], headers=AUTH).text
    )
    assert f"user '{USER}' from 127.0.0.1 revoked workflow {workflow_id} (3 task(s))" in caplog.text
    found = wait_until(lambda: finished(dash, workflow_id), timeout=15, message="the end")
    # the running nap finished; what would have followed did not run
    assert found[0] == ("nap", states.SUCCESS)
    assert found[1] == ("add", states.REVOKED)
    assert found[2][1] != states.SUCCESS

    # a finished workflow: nothing to revoke; a revoked one is not retried
    page = client.get(action(client, workflow_id, "revoke").headers["Location"], headers=AUTH)
    assert "has finished: nothing to revoke" in page.text
    page = client.get(action(client, workflow_id, "retry").headers["Location"], headers=AUTH)
    assert "was revoked: launch it again" in page.text


def test_retry_a_failed_workflow_from_its_failed_steps(dash, client, worker, r, caplog):
    caplog.set_level(logging.INFO, "flask_taskq.dashboard")
    day = uuid.uuid4().hex[:8]
    bad = f"bad-{day}"
    sent = launch(
        client, kind="template", name="report", kwargs=f'{{"day": "{day}", "broken": "{bad}"}}'
    )
    workflow_id = sent.headers["Location"].rsplit("/", 1)[-1]
    found = wait_until(lambda: finished(dash, workflow_id), timeout=15, message="the failure")
    assert [s for _, s in found].count(states.FAILURE) == 3  # the member, total, the last
    ran = {
        tag: runs(r, tag) for tag in (f"first-{day}", f"g1-{day}", bad, f"g3-{day}", f"last-{day}")
    }
    assert ran == {f"first-{day}": 1, f"g1-{day}": 1, bad: 1, f"g3-{day}": 1, f"last-{day}": 0}

    r.set(f"test:fixed:{bad}", 1)
    answer = action(client, workflow_id, "retry")
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"], headers=AUTH).text
    assert f"Retrying workflow {workflow_id}: 3 task(s) run again" in page
    assert f"user '{USER}' from 127.0.0.1 retried workflow {workflow_id}" in caplog.text
    with dash.app_context():
        assert tq.AsyncResult(workflow_id).get(timeout=15) == 7
    wait_until(lambda: all(s == states.SUCCESS for _, s in task_states(dash, workflow_id)))
    # the failed member ran again, and what followed it; the others did not
    ran = {tag: runs(r, tag) for tag in ran}
    assert ran == {f"first-{day}": 1, f"g1-{day}": 1, bad: 2, f"g3-{day}": 1, f"last-{day}": 1}

    page = client.get(action(client, workflow_id, "retry").headers["Location"], headers=AUTH)
    assert "succeeded: nothing to retry" in page.text


def test_cli_workflow_retry(dash, worker, r):
    """``flask taskq workflow retry ID``: a chain that failed in its middle step."""
    day = uuid.uuid4().hex[:8]
    bad = f"bad-{day}"
    with dash.app_context():
        res = chain(step.s(0, f"a-{day}"), step.s(bad), step.s(f"c-{day}")).apply_async()
    wait_until(lambda: finished(dash, res.id), timeout=15, message="the failure")
    runner = dash.test_cli_runner()
    # still broken: the failed step and the one after it run again, and fail again
    out = runner.invoke(args=["taskq", "workflow", "retry", res.id])
    assert out.exit_code == 0, out.output
    assert f"Retrying workflow {res.id}: 2 task(s) run again" in out.output
    wait_until(lambda: finished(dash, res.id), timeout=15, message="the second failure")
    assert (runs(r, f"a-{day}"), runs(r, bad), runs(r, f"c-{day}")) == (1, 2, 0)
    r.set(f"test:fixed:{bad}", 1)
    out = runner.invoke(args=["taskq", "workflow", "retry", res.id])
    assert out.exit_code == 0, out.output
    with dash.app_context():
        assert res.get(timeout=15) == 3
    assert (runs(r, f"a-{day}"), runs(r, bad), runs(r, f"c-{day}")) == (1, 3, 1)

    out = runner.invoke(args=["taskq", "workflow", "retry", "no-such-id"])
    assert out.exit_code == 1
    assert "no workflow 'no-such-id'" in out.output


def test_cli_workflow_launch_and_revoke(dash, worker, r):
    runner = dash.test_cli_runner()
    out = runner.invoke(args=["taskq", "workflow", "launch", "add-chain", "--args", "[2]"])
    assert out.exit_code == 0, out.output
    with dash.app_context():
        assert tq.AsyncResult(out.output.strip()).get(timeout=10) == 13

    out = runner.invoke(args=["taskq", "workflow", "launch", "report", "--kwargs", "[1]"])
    assert out.exit_code == 2 and "give a JSON object" in out.output
    out = runner.invoke(args=["taskq", "workflow", "launch", "report", "--args", "[1"])
    assert out.exit_code == 2 and "not valid JSON" in out.output
    out = runner.invoke(args=["taskq", "workflow", "launch", "nope"])
    assert out.exit_code == 1 and "unknown workflow template 'nope'" in out.output
    out = runner.invoke(args=["taskq", "workflow", "launch", "report"])
    assert out.exit_code == 1 and "missing a required argument: 'day'" in out.output

    token_ = uuid.uuid4().hex
    args = [
        "taskq",
        "workflow",
        "launch",
        "slow",
        "--kwargs",
        f'{{"seconds": 2, "token": "{token_}"}}',
    ]
    workflow_id = runner.invoke(args=args).output.strip()
    wait_until(lambda: r.exists(f"test:started:{token_}"), message="the nap running")
    out = runner.invoke(args=["taskq", "workflow", "revoke", workflow_id])
    assert out.exit_code == 0, out.output
    assert f"Revoked 3 task(s) of workflow {workflow_id}" in out.output
    found = wait_until(lambda: finished(dash, workflow_id), timeout=15, message="the end")
    assert found[1] == ("add", states.REVOKED)
