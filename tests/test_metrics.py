"""Prometheus metrics (flask_taskq.metrics): both renderers read back with the Prometheus
text parser, after a real worker ran tasks."""

from __future__ import annotations

import pytest

from flask_taskq import metrics
from flask_taskq.metrics import CounterTotals, Family, exposition, render_text
from flask_taskq.monitor import Monitor, runtime_bucket
from tests.conftest import wait_until
from tests.test_dashboard import AUTH, add, boom, create_app, nap, report

parser = pytest.importorskip("prometheus_client.parser")


def families(text):
    """name -> {(sample name, sorted labels): value} as the Prometheus parser reads them."""
    out = {}
    for fam in parser.text_string_to_metric_families(text):
        out[fam.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
        out[fam.name]["type"] = fam.type
    return out


@pytest.fixture
def dash(redis_url):
    return create_app(TASKQ_BROKER_URL=redis_url)


@pytest.fixture
def ran(dash, start_worker):
    """A worker on "default" ran 3 adds and one failing task; a report waits."""
    start_worker(
        "-P", "solo", "-n", "metrics@test", "-Q", "default", app="tests.test_dashboard:create_app"
    )
    with dash.app_context():
        for res in [add.delay(i, 1) for i in range(3)]:
            res.get(timeout=10)
        with pytest.raises(ValueError):
            boom.delay("no").get(timeout=10)
        report.delay(7)
    mon = Monitor(dash.extensions["taskq"].store.monitor)
    wait_until(
        lambda: mon.totals(5).get(("failed", "default", boom.name)),
        message="the counters published",
    )
    return dash


@pytest.mark.parametrize("use_client", [False, True], ids=["plain", "prometheus_client"])
def test_metrics_parse_and_count(ran, use_client):
    body, content_type = exposition(ran, use_client=use_client)
    assert content_type.startswith("text/plain; version=")
    got = families(body.decode())
    q = (("queue", "default"),)
    assert got["taskq_queue_depth"][("taskq_queue_depth", (("queue", "reports"),))] == 1
    assert got["taskq_queue_depth"][("taskq_queue_depth", q)] == 0
    assert got["taskq_queue_dead_letters"]["type"] == "gauge"
    processed = got["taskq_tasks_processed"]
    assert processed["type"] == "counter"
    assert processed[("taskq_tasks_processed_total", (*q, ("task", add.name)))] == 3
    failed = got["taskq_tasks_failed"]
    assert failed[("taskq_tasks_failed_total", (*q, ("task", boom.name)))] == 1
    runtime = got["taskq_task_runtime_seconds"]
    assert runtime["type"] == "histogram"
    labels = (*q, ("task", add.name))
    assert runtime[("taskq_task_runtime_seconds_count", labels)] == 3
    assert runtime[("taskq_task_runtime_seconds_bucket", (("le", "+Inf"), *labels))] == 3
    assert 0 <= runtime[("taskq_task_runtime_seconds_sum", labels)] < 3
    assert runtime[("taskq_task_runtime_seconds_bucket", (("le", "10.0"), *labels))] == 3
    assert got["taskq_workers_alive"][("taskq_workers_alive", ())] == 1
    assert got["taskq_worker_processes"][("taskq_worker_processes", ())] == 1


@pytest.mark.parametrize("use_client", [False, True], ids=["plain", "prometheus_client"])
def test_runtime_histogram_buckets(dash, start_worker, use_client):
    """Runs of known lengths land in the right buckets, cumulated."""
    start_worker("-P", "solo", "-Q", "default", app="tests.test_dashboard:create_app")
    lengths = [0.0, 0.0, 0.03, 0.03, 0.3]  # buckets 0.005 (or 0.01), 0.05, 0.5
    with dash.app_context():
        for res in [nap.delay(s) for s in lengths]:
            res.get(timeout=10)
    mon = Monitor(dash.extensions["taskq"].store.monitor)
    wait_until(
        lambda: mon.totals(5).get(("processed", "default", nap.name)) == 5,
        message="the five naps published",
    )
    runtime = families(exposition(dash, use_client=use_client)[0].decode())[
        "taskq_task_runtime_seconds"
    ]
    labels = (("queue", "default"), ("task", nap.name))

    def bucket(le):
        return runtime[("taskq_task_runtime_seconds_bucket", (("le", le), *labels))]

    assert bucket("0.01") == 2 and bucket("0.025") == 2
    assert bucket("0.05") == 4 and bucket("0.25") == 4
    assert bucket("0.5") == 5 and bucket("10.0") == 5 and bucket("+Inf") == 5
    assert runtime[("taskq_task_runtime_seconds_count", labels)] == 5
    assert 0.36 <= runtime[("taskq_task_runtime_seconds_sum", labels)] < 1
    les = [
        dict(lbl)["le"]
        for key, lbl in (k for k in runtime if k != "type")
        if key.endswith("_bucket") and set(labels) <= set(lbl)
    ]
    assert les[-1] == "+Inf" and len(les) == 12


def test_runtime_bucket_bounds_are_inclusive():
    assert runtime_bucket(0) == "rt_le_0.005" and runtime_bucket(0.005) == "rt_le_0.005"
    assert runtime_bucket(0.0051) == "rt_le_0.01" and runtime_bucket(1) == "rt_le_1.0"
    assert runtime_bucket(10) == "rt_le_10.0" and runtime_bucket(10.01) == "rt_le_+Inf"


def test_both_renderers_agree(ran):
    plain = families(exposition(ran, use_client=False)[0].decode())
    library = families(exposition(ran, use_client=True)[0].decode())
    assert plain == library


def test_counters_survive_expiring_minutes(ran):
    """The per-minute hashes expire; the totals a scrape reports never go down."""
    client = ran.extensions["taskq"].broker.client
    first = families(exposition(ran, use_client=False)[0].decode())
    for key in client.scan_iter("taskq:stats:*"):
        client.delete(key)
    later = families(exposition(ran, use_client=False)[0].decode())
    assert later["taskq_tasks_processed"] == first["taskq_tasks_processed"]


def test_counter_totals_add_what_minutes_gained():
    totals = CounterTotals()
    k = ("processed", "default", "t")
    assert totals.update([{"minute": 60, "counts": {k: 2}}]) == {k: 2}
    assert totals.update([{"minute": 60, "counts": {k: 5}}, {"minute": 120, "counts": {k: 1}}]) == {
        k: 6
    }
    # minute 60 left the window (expired): nothing is taken away
    assert totals.update([{"minute": 120, "counts": {k: 1}}]) == {k: 6}
    # Redis emptied: the minute counts from zero again
    assert totals.update([{"minute": 120, "counts": {k: 1}}, {"minute": 180, "counts": {}}]) == {
        k: 6
    }


def test_label_values_are_escaped():
    odd = 'a "quoted" \\ back\nslash'
    text = render_text(
        [Family("x_total_things", "gauge", "help with \\ and\nnewline", ("task",), [((odd,), 1.5)])]
    )
    [fam] = parser.text_string_to_metric_families(text)
    assert fam.samples[0].labels == {"task": odd} and fam.samples[0].value == 1.5
    assert fam.documentation == "help with \\ and\nnewline"


def test_metrics_route_follows_the_dashboard_auth(dash):
    client = dash.test_client()
    assert client.get("/taskq/metrics").status_code == 401
    resp = client.get("/taskq/metrics", headers=AUTH)
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    assert "taskq_workers_alive" in families(resp.text)


def test_plain_text_without_prometheus_client(dash, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_client(name, *args, **kwargs):
        if name.startswith("prometheus_client"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_client)
    body, content_type = metrics.exposition(dash)
    assert content_type == metrics.CONTENT_TYPE
    monkeypatch.undo()
    assert "taskq_queue_depth" in families(body.decode())


def test_memory_broker_has_queue_metrics():
    app = create_app(TASKQ_BROKER_URL="memory://")
    got = families(exposition(app, use_client=False)[0].decode())
    assert got["taskq_queue_depth"][("taskq_queue_depth", (("queue", "default"),))] == 0
    assert got["taskq_workers_alive"][("taskq_workers_alive", ())] == 0
