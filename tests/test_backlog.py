"""The backlog of each queue (issue 20 item 6, issue 15 item 3): ready, reserved (delivered,
not acked), delayed and their sum ``backlog`` in ``inspect queues`` (text and ``--json``),
the Prometheus metrics and the dashboard's queue views, on ``memory://``, a real
redis-server (with real worker processes), a sharded queue, and RabbitMQ.

The known setup: a worker of 4 threads runs 4 ``hold`` tasks (reserved), and then 5 adds
wait (ready: every thread is busy, so none is fetched) and 3 adds wait for a countdown
(delayed)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_taskq.metrics import exposition
from tests.amqp_fixtures import rabbit_problem
from tests.apps import backlog_app
from tests.apps.backlog_app import PASSWORD, USER, add, create_app, hold
from tests.conftest import Transport, WorkerProcess, wait_until
from tests.test_amqp import amqp_env, vhost  # noqa: F401

APP = "tests.apps.backlog_app:create_app"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
EXPECTED = {"ready": 5, "reserved": 4, "delayed": 3, "backlog": 12}


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    backlog_app.RELEASE.clear()
    yield
    backlog_app.RELEASE.set()  # the in-process worker's holds end


def inspect_json(app: Flask) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(args=["taskq", "inspect", "queues", "--json"])
    assert result.exit_code == 0, result.output
    return {row["queue"]: row for row in json.loads(result.output)["queues"]}


def counts(row: dict[str, Any]) -> dict[str, int]:
    return {k: row[k] for k in EXPECTED}


def fill(app: Flask) -> None:
    """The known setup (see the module's docstring), once the 4 holds run."""
    with app.app_context():
        for _ in range(4):
            hold.delay(120)
        wait_until(
            lambda: (
                inspect_json(app)["default"]["reserved"] == 4
                and inspect_json(app)["default"]["ready"] == 0
            ),
            timeout=30,
            message="4 holds taken by the worker",
        )
        add.delay_many([(i, 1) for i in range(5)])
        for i in range(3):
            add.apply_async((i, 2), countdown=600)


def metric_samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(name, labels): value}`` of the app's exposition (the built-in renderer)."""
    body, _ = exposition(app, use_client=False)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.match(r"(\w+)(?:\{(.*)\})? (\S+)$", line)
        assert m, line
        labels = tuple(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def check_views(app: Flask, exact: bool = True) -> None:
    """inspect (JSON and text), metrics and the dashboard agree on the known setup.

    Not ``exact`` (RabbitMQ): RabbitMQ may push some of the 5 ready messages to the
    worker ahead of a free thread (its ``basic.qos`` window), which then counts them as
    reserved, so only their sum is known; reserved comes from the workers' heartbeats,
    up to 2 s old (docs/autoscaling.rst)."""
    rows: list[dict[str, Any]] = []

    def settled() -> bool:
        rows.append(inspect_json(app)["default"])
        got = counts(rows[-1])
        if exact:
            return got == EXPECTED
        return (
            got["ready"] + got["reserved"] == 9
            and got["reserved"] >= 4
            and got["delayed"] == 3
            and got["backlog"] == 12
        )

    wait_until(settled, timeout=10, message="the counts of the known setup")
    row = rows[-1]
    expected = counts(row)
    assert row["waiting"] == expected["ready"]  # the former name of ready
    want = [str(expected[k]) for k in ("ready", "reserved", "delayed", "backlog")]
    text = app.test_cli_runner().invoke(args=["taskq", "inspect", "queues"]).output
    header, default = text.splitlines()[1], text.splitlines()[2]
    assert header.split()[:6] == ["QUEUE", "READY", "RESERVED", "DELAYED", "BACKLOG", "DEAD"]
    assert default.split()[:5] == ["default", *want], text

    samples = metric_samples(app)
    for count, value in expected.items():
        assert samples[(f"taskq_queue_{count}", (("queue", "default"),))] == value, count
    assert samples[("taskq_queue_depth", (("queue", "default"),))] == expected["ready"]

    page = app.test_client().get("/taskq/queues", headers=AUTH)
    assert page.status_code == 200
    cells = re.search(r'<tr data-queue="default">(.*?)</tr>', page.text, re.S)
    assert cells is not None
    numbers = re.findall(r'<td class="num[^"]*">(\d+)</td>', cells.group(1))
    assert numbers[:4] == want, numbers


def test_backlog_in_inspect_metrics_and_dashboard(transport: Transport) -> None:
    transport.worker(app=APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    app = create_app(**transport.config())
    fill(app)
    check_views(app, exact=transport.name != "amqp")
    assert inspect_json(app)["default"]["shards"] == []


@pytest.mark.parametrize("where", ["one Redis", "cluster"])
def test_a_sharded_queue_shows_its_total_and_its_shards(
    request: pytest.FixtureRequest, where: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    url = request.getfixturevalue("redis_url" if where == "one Redis" else "cluster_url")
    shards = json.dumps({"default": 3})
    env = {"TASKQ_BROKER_URL": url, "TASKQ_RESULT_BACKEND": url, "TASKQ_QUEUE_SHARDS": shards}
    start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    app = create_app(TASKQ_BROKER_URL=url, TASKQ_QUEUE_SHARDS={"default": 3})
    fill(app)
    check_views(app)
    row = inspect_json(app)["default"]
    assert [s["shard"] for s in row["shards"]] == ["default", "default~1", "default~2"]
    for count, value in EXPECTED.items():
        assert sum(s[count] for s in row["shards"]) == value, count
    assert sum(1 for s in row["shards"] if s["backlog"]) >= 2  # spread, not on one shard
    for s in row["shards"]:
        assert s["backlog"] == s["ready"] + s["reserved"] + s["delayed"]

    text = app.test_cli_runner().invoke(args=["taskq", "inspect", "queues"]).output
    lines = {line.split()[0]: line.split() for line in text.splitlines()[2:]}
    for s in row["shards"]:
        assert lines[s["shard"]][1:5] == [str(s[c]) for c in EXPECTED], text

    samples = metric_samples(app)
    for s in row["shards"]:
        labels = (("queue", "default"), ("shard", s["shard"]))
        for count in EXPECTED:
            assert samples[(f"taskq_queue_shard_{count}", labels)] == s[count]

    page = app.test_client().get("/taskq/queues", headers=AUTH).text
    for s in row["shards"]:
        cells = re.search(rf'<tr class="shard" data-shard="{s["shard"]}">(.*?)</tr>', page, re.S)
        assert cells is not None, s["shard"]
        numbers = re.findall(r'<td class="num">(\d+)</td>', cells.group(1))
        assert numbers == [str(s[c]) for c in EXPECTED]


def test_on_rabbitmq_reserved_comes_from_the_heartbeats(
    vhost: str,  # noqa: F811
    amqp_env: dict[str, str],  # noqa: F811
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """RabbitMQ pushes messages to a consumer up to its prefetch (they are unacked, so
    reserved): the split between ready and reserved depends on it, the sum does not."""
    if rabbit_problem() is not None:
        pytest.skip(str(rabbit_problem()))
    start_worker("-P", "threads", "-c", "4", app=APP, env=amqp_env)
    app = create_app()
    try:
        fill(app)

        def settled() -> dict[str, Any] | None:
            row = inspect_json(app)["default"]
            return row if row["backlog"] == 12 else None

        row = wait_until(settled, timeout=30, message="a backlog of 12 (heartbeats)")
        assert row["delayed"] == 3 and row["reserved"] >= 4 and row["ready"] + row["reserved"] == 9
        samples = metric_samples(app)
        assert samples[("taskq_queue_backlog", (("queue", "default"),))] == 12
    finally:
        app.extensions["taskq"].broker.close()
