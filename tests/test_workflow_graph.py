"""Workflow graph data (issue 5): what a chain, group or chord records in Redis when it is
sent, ``flask taskq inspect workflow`` and the dashboard's workflow pages (issue 6), with
real worker processes running ``tests.apps.canvas_app``."""

from __future__ import annotations

import base64
import json

import pytest

from flask_taskq import chain, chord, group
from flask_taskq import workflow_graph as wg
from flask_taskq.keys import Keys
from flask_taskq.message import Message
from tests.apps.canvas_app import add, boom, collect, double, mul, note, tsum
from tests.conftest import wait_until

APP = "tests.apps.canvas_app:create_app"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
KEYS = Keys("taskq")


@pytest.fixture
def capp(redis_url, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.canvas_app import create_app

    app = create_app(TASKQ_DASHBOARD=True, SECRET_KEY="test", TASKQ_DASHBOARD_AUTH=("admin", "pw"))
    with app.app_context():
        yield app


@pytest.fixture
def state(capp):
    return capp.extensions["taskq"]


@pytest.fixture
def worker(start_worker):
    return start_worker("-P", "threads", "-c", "4", app=APP)


def shape(node):
    """The tree as nested (kind or task name, children) tuples."""
    if node["kind"] == "task":
        return node["task"].rsplit(".", 1)[-1]
    return (node["kind"], [shape(c) for c in node["children"]])


def settled(state, workflow_id):
    """Wait until every task of the workflow has a final state (results are written in
    batches, so a step can finish before the one before it shows SUCCESS)."""

    def done():
        doc = wg.with_states(state, wg.load(state, workflow_id))
        return (
            doc
            if doc["state"] in ("SUCCESS", "FAILURE")
            and not {"PENDING", "STARTED"} & set(doc["counts"])
            else None
        )

    return wait_until(done, timeout=15, message=f"workflow {workflow_id} settled")


def inspect(app, *args):
    return app.test_cli_runner().invoke(args=["taskq", "inspect", "workflow", *args])


# -- the recorded document -------------------------------------------------------------------
def test_sending_a_chain_records_its_shape_once(capp, state, r):
    res = chain(
        add.s(1, 2), group(double.s(), mul.s(10)), collect.s(), note.s(token="g")
    ).apply_async()
    doc = json.loads(r.get(KEYS.workflow(res.id)))
    assert doc["id"] == res.id and doc["kind"] == "chain" and doc["size"] == 5
    assert shape(doc["tree"]) == (
        "chain",
        ["add", ("chord", [("group", ["double", "mul"]), "collect"]), "note"],
    )
    collected, header, first = res.parent, res.parent.parent, res.parent.parent.parent
    ids = [first.id, header[0].id, header[1].id, collected.id, res.id]
    assert [n["id"] for n in doc["nodes"]] == ids
    assert sorted(map(tuple, doc["edges"])) == sorted(
        [
            (first.id, header[0].id),
            (first.id, header[1].id),
            (header[0].id, collected.id),
            (header[1].id, collected.id),
            (collected.id, res.id),
        ]
    )
    # every other id (tasks and the chord's group) points to the workflow
    for other in [*ids[:-1], header.id]:
        assert r.get(KEYS.workflow_of(other)) == res.id
        assert wg.load(state, other)["id"] == res.id
    assert r.zrange(KEYS.workflows(), 0, -1) == [res.id]
    assert 0 < r.ttl(KEYS.workflow(res.id)) <= 86400
    assert 0 < r.ttl(KEYS.workflow_of(first.id)) <= 86400
    # the first message carries the workflow id in its headers
    [(_, [(_, fields)])] = r.xread({"taskq:{default}:p5": 0})
    message = Message.from_bytes(fields["m"].encode(), state.serializer)
    assert message.id == first.id and message.headers["taskq_workflow"] == res.id


def test_the_id_of_a_group_or_chord_result_finds_its_workflow(capp, state, r):
    grouped = group(add.s(i, i) for i in range(3)).delay()
    assert wg.load(state, grouped.id)["kind"] == "group"
    assert wg.load(state, grouped[2].id)["id"] == grouped.id
    chorded = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).delay()
    doc = wg.load(state, chorded.id)
    assert doc["kind"] == "chord" and doc["id"] == chorded.id
    assert wg.load(state, chorded.parent.id)["id"] == chorded.id
    assert wg.load(state, "no-such-id") is None
    assert wg.workflow_id_of(state, chorded.parent[0].id) == chorded.id
    assert wg.workflow_id_of(state, "no-such-id") is None
    assert r.zrevrange(KEYS.workflows(), 0, -1) == [chorded.id, grouped.id]


def test_single_tasks_record_nothing(capp, r):
    add.delay(1, 1)
    add.s(1, 1).delay()
    assert not r.keys("taskq:workflow*")


def test_no_expiry_when_results_never_expire(capp, state, r):
    state.result_expires = 0
    res = (add.s(1, 1) | double.s()).delay()
    assert r.ttl(KEYS.workflow(res.id)) == -1
    assert r.ttl(KEYS.workflow_of(res.parent.id)) == -1


def test_recent_workflows_are_capped(capp, state, r, monkeypatch):
    monkeypatch.setattr(wg, "RECENT_LIMIT", 3)
    sent = [group(add.s(i, i), add.s(i, 1)).delay().id for i in range(5)]
    assert r.zrevrange(KEYS.workflows(), 0, -1) == sent[:1:-1]


# -- states ----------------------------------------------------------------------------------
def test_states_come_from_the_results(capp, state, worker):
    res = (add.s(1, 1) | boom.s() | double.s()).delay()
    before = wg.with_states(state, wg.load(state, res.id))
    assert before["state"] in ("PENDING", "STARTED")
    doc = settled(state, res.id)
    assert [n["state"] for n in doc["tree"]["children"]] == ["SUCCESS", "FAILURE", "FAILURE"]
    assert doc["state"] == "FAILURE" and doc["counts"] == {"SUCCESS": 1, "FAILURE": 2}
    ok = chord([add.s(1, 1), add.s(2, 2)], tsum.s() | double.s()).delay()
    assert ok.get(timeout=15) == 12
    doc = settled(state, ok.id)
    assert shape(doc["tree"]) == (
        "chord",
        [("group", ["add", "add"]), ("chain", ["tsum", "double"])],
    )
    assert doc["state"] == "SUCCESS" and doc["counts"] == {"SUCCESS": 4}


def test_combined_state():
    assert wg.combined_state(["SUCCESS", "SUCCESS"]) == "SUCCESS"
    assert wg.combined_state(["SUCCESS", "PENDING"]) == "STARTED"
    assert wg.combined_state(["PENDING", "PENDING"]) == "PENDING"
    assert wg.combined_state(["SUCCESS", "FAILURE", "PENDING"]) == "FAILURE"
    assert wg.combined_state(["SUCCESS", "REVOKED"]) == "REVOKED"


# -- flask taskq inspect workflow --------------------------------------------------------------
def test_inspect_workflow_prints_an_indented_tree(capp, state, worker):
    res = (add.s(1, 1) | group(double.s(), mul.s(10)) | tsum.s()).delay()
    assert res.get(timeout=15) == 24
    settled(state, res.id)
    out = inspect(capp, res.id)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith(f"Workflow {res.id} (chain, 4 tasks: 4 SUCCESS)")
    first = res.parent.parent
    assert lines[1:] == [
        f"chain  {res.id[:8]}  SUCCESS",
        f"  tests.apps.canvas_app.add  {first.id[:8]}  SUCCESS",
        f"  chord  {res.id[:8]}  SUCCESS",
        f"    group  {res.parent.id[:8]}  SUCCESS",
        f"      tests.apps.canvas_app.double  {res.parent[0].id[:8]}  SUCCESS",
        f"      tests.apps.canvas_app.mul  {res.parent[1].id[:8]}  SUCCESS",
        f"    tests.apps.canvas_app.tsum  {res.id[:8]}  SUCCESS",
    ]
    by_member = inspect(capp, first.id, "--json")
    doc = json.loads(by_member.output)
    assert doc["id"] == res.id and doc["state"] == "SUCCESS"
    assert doc["tree"]["children"][0]["state"] == "SUCCESS"


def test_inspect_unknown_workflow_is_one_line_and_exit_1(capp):
    out = inspect(capp, "nope")
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [out.output.strip()]  # one line
    assert "no workflow 'nope'" in out.output and "Traceback" not in out.output


# -- the dashboard ---------------------------------------------------------------------------
def get(client, path):
    return client.get(path, headers=AUTH)


def test_dashboard_lists_recent_workflows(capp, state, worker):
    client = capp.test_client()
    empty = get(client, "/taskq/workflows")
    assert empty.status_code == 200 and "No workflow data yet" in empty.text
    res = chord((add.s(i, i) for i in range(3)), tsum.s()).delay()
    assert res.get(timeout=15) == 6
    page = get(client, "/taskq/workflows")
    assert page.status_code == 200
    assert f'href="/taskq/workflows/{res.id}"' in page.text
    assert "chord(group(3x add) → tsum)" in page.text
    assert 'data-live="/taskq/api/workflows"' in page.text
    live = get(client, "/taskq/api/workflows").get_json()
    assert res.id in live["regions"]["workflow_list"]


def test_dashboard_draws_a_workflow_with_states(capp, state, worker):
    client = capp.test_client()
    res = (add.s(1, 1) | group(double.s(), boom.s()) | tsum.s()).delay()
    settled(state, res.id)
    page = get(client, f"/taskq/workflows/{res.id}")
    assert page.status_code == 200
    assert "workflows.css" in page.text
    first = res.parent.parent
    assert f'data-node="{first.id}" data-state="SUCCESS"' in page.text
    assert f'data-node="{res.parent[1].id}" data-state="FAILURE"' in page.text
    assert f'data-node="{res.id}" data-state="FAILURE"' in page.text
    assert f'href="/taskq/task/{first.id}"' in page.text
    assert page.text.count('class="wf-box wf-group"') == 1
    # any task id of the workflow shows the same graph; the live region follows it
    member = get(client, f"/taskq/workflows/{first.id}")
    assert member.status_code == 200 and "is part of this workflow" in member.text
    live = get(client, f"/taskq/api/workflows/{res.id}").get_json()
    assert (
        f'data-node="{res.parent[1].id}" data-state="FAILURE"' in live["regions"]["workflow_graph"]
    )
    assert get(client, "/taskq/workflows/nope").status_code == 404
    assert get(client, "/taskq/api/workflows/nope").status_code == 404


def test_big_groups_are_summed_up(capp, state, monkeypatch):
    from flask_taskq.dashboard import workflows as pages

    monkeypatch.setattr(pages, "GROUP_SHOWN", 5)
    res = group(add.s(i, i) for i in range(12)).delay()
    page = get(capp.test_client(), f"/taskq/workflows/{res.id}")
    assert page.text.count('class="wf-task') == 5
    assert "+ 7 more" in page.text


def test_task_page_link_snippet(capp, state):
    from flask import render_template

    res = (add.s(1, 1) | double.s()).delay()
    with capp.test_request_context("/taskq/task/x"):
        html = render_template(
            "taskq_dashboard/_workflow_link.html", c={"task": {"id": res.parent.id}}
        )
        assert f'href="/taskq/workflows/{res.id}"' in html
        alone = render_template("taskq_dashboard/_workflow_link.html", c={"task": {"id": "alone"}})
        assert "workflow" not in alone.replace("taskq_workflow_of", "")


def test_task_page_links_to_its_workflow(capp, state):
    res = (add.s(1, 1) | double.s()).delay()
    page = get(capp.test_client(), f"/taskq/task/{res.parent.id}")
    assert f'href="/taskq/workflows/{res.id}"' in page.text
    alone = add.delay(1, 1)
    assert 'id="task-workflow"' not in get(capp.test_client(), f"/taskq/task/{alone.id}").text
