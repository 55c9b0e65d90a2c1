"""Retrying a failed workflow from its failed steps (``flask_taskq.workflow_actions``) over
the shapes a workflow takes, on every transport: ``memory://`` (the app's own threads run
the tasks), and the test redis-server or RabbitMQ (with the redis-server as the store)
with a real worker process."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from flask import Flask

from flask_taskq import TaskQueue, states, workflow_actions, workflow_graph
from flask_taskq.canvas import chain, chord, group
from tests.conftest import wait_until

tq = TaskQueue()
APP = "tests.test_dashboard_launch_retry:create_app"
_RUNS: dict[str, int] = {}  # memory://: the tasks run in this process
_FIXED: set[str] = set()


def _client() -> redis.Redis | None:
    url = os.environ.get("TASKQ_STORE_URL") or os.environ.get("TASKQ_BROKER_URL", "")
    return redis.Redis.from_url(url) if url.startswith("redis") else None


def _count(tag: str) -> bool:
    """Count a run of ``tag``; True if it may succeed."""
    client = _client()
    if client is None:
        _RUNS[tag] = _RUNS.get(tag, 0) + 1
        return not tag.startswith("bad") or tag in _FIXED
    client.incr(f"test:runs:{tag}")
    return not tag.startswith("bad") or bool(client.exists(f"test:fixed:{tag}"))


@tq.task
def step(x, tag):
    if not _count(tag):
        raise ValueError(f"{tag} is broken")
    return (x or 0) + 1


@tq.task
def total(values, tag="total"):
    if not _count(tag):
        raise ValueError(f"{tag} is broken")
    return sum(values)


def create_app() -> Flask:
    app = Flask("retry")
    url = os.environ["TASKQ_BROKER_URL"]
    store = os.environ.get("TASKQ_STORE_URL") or url  # RabbitMQ: the store keeps results
    app.config.update(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=store, TASKQ_STORE_URL=store)
    tq.init_app(app)
    return app


@pytest.fixture
def env(transport, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", transport.url)
    if transport.store_url != transport.url:
        monkeypatch.setenv("TASKQ_STORE_URL", transport.store_url)
    app = create_app()
    transport.worker(app=APP, env={"TASKQ_BROKER_URL": transport.url})
    client = _client()

    def runs(tag: str) -> int:
        return _RUNS.get(tag, 0) if client is None else int(client.get(f"test:runs:{tag}") or 0)

    def fix(tag: str) -> None:
        if client is None:
            _FIXED.add(tag)
        else:
            client.set(f"test:fixed:{tag}", 1)

    with app.app_context():
        yield app.extensions["taskq"], runs, fix


def _finished(state, workflow_id):
    doc = workflow_graph.with_states(state, workflow_graph.load(state, workflow_id))
    nodes = workflow_graph.task_nodes(doc["tree"])
    return doc if all(n["state"] in states.READY_STATES for n in nodes) else None


def _shapes(t: str):
    """name -> (workflow, failing tag, value once fixed, tags that must run once only)"""
    return {
        "chain ending in a group": (
            chain(step.s(0, f"a{t}"), group(step.s(f"b{t}"), step.s(f"bad1{t}"))),
            f"bad1{t}",
            [2, 2],
            [f"a{t}", f"b{t}"],
        ),
        "chord whose callback failed": (
            chord([step.s(0, f"m1{t}"), step.s(0, f"m2{t}")], total.s(f"bad2{t}")),
            f"bad2{t}",
            2,
            [f"m1{t}", f"m2{t}"],
        ),
        "chord member chain failing midway": (
            chord(
                [chain(step.s(0, f"c1{t}"), step.s(f"bad3{t}")), step.s(5, f"c2{t}")],
                total.s(f"cb{t}"),
            ),
            f"bad3{t}",
            8,
            [f"c1{t}", f"c2{t}"],
        ),
        "group of chains": (
            group(chain(step.s(0, f"d1{t}"), step.s(f"bad4{t}")), step.s(0, f"d2{t}")),
            f"bad4{t}",
            [2, 1],
            [f"d1{t}", f"d2{t}"],
        ),
    }


@pytest.mark.parametrize(
    "shape",
    [
        "chain ending in a group",
        "chord whose callback failed",
        "chord member chain failing midway",
        "group of chains",
    ],
)
def test_retry_runs_only_what_failed(env, shape):
    state, runs, fix = env
    flow, bad, value, once = _shapes(uuid.uuid4().hex[:8])[shape]
    result = flow.apply_async()
    wait_until(lambda: _finished(state, result.id), timeout=15, message="the failure")
    assert runs(bad) == 1
    fix(bad)
    retried = workflow_actions.retry(state, result.id)
    assert retried.workflow_id == result.id
    assert result.get(timeout=15) == value
    doc = wait_until(lambda: _finished(state, result.id), timeout=15)
    assert doc["state"] == states.SUCCESS
    assert runs(bad) == 2
    assert all(runs(tag) == 1 for tag in once), {tag: runs(tag) for tag in once}


def test_retry_refuses_a_workflow_without_its_canvas(env):
    state, _, _ = env
    t = uuid.uuid4().hex[:8]
    result = chain(step.s(0, f"bad5{t}"), step.s(f"x{t}")).apply_async()
    wait_until(lambda: _finished(state, result.id), timeout=15)
    store = state.store.workflows
    if hasattr(store, "_canvases"):
        store._canvases.clear()
    else:
        store.client.delete(store.keys.workflow_canvas(result.id))
    with pytest.raises(workflow_actions.WorkflowActionError, match="cannot be retried"):
        workflow_actions.retry(state, result.id)
    with pytest.raises(workflow_actions.WorkflowActionError, match="no workflow"):
        workflow_actions.retry(state, "no-such-workflow")
