"""OpenTelemetry trace context across the queue (issue 20 item 2): a request's span is
the parent of the ``send`` span, whose context travels in the message headers to the
``run`` span of a real worker process (and of eager mode)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from tests.conftest import ROOT, wait_until

_provider: TracerProvider | None = None
_exporter = InMemorySpanExporter()


def _install(provider: TracerProvider | None) -> None:
    """Make ``provider`` the global tracer provider (None: none), as OpenTelemetry's own
    test utilities do, so that the rest of the suite runs without one."""
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    if provider is not None:
        trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK's in-memory exporter, behind the tracer provider of this test process
    (the same provider each time: flask-taskq keeps the tracer it got), emptied for
    each test; no provider is left set afterwards."""
    global _provider
    if _provider is None:
        _provider = TracerProvider()
        _provider.add_span_processor(SimpleSpanProcessor(_exporter))
    _install(_provider)
    _exporter.clear()
    yield _exporter
    _install(None)


def _traced_worker(start_worker, tmp_path, pool: str):
    """A worker of the OpenTelemetry test app whose spans go to a JSON-lines file."""
    spans_file = tmp_path / "worker-spans.jsonl"
    start_worker(
        "-P",
        pool,
        "-c",
        "2",
        app="tests.apps.otel_app:create_app",
        env={"TASKQ_TEST_SPANS": str(spans_file)},
    )
    return spans_file


def _hex(value: int) -> str:
    return f"0x{value:016x}"


def _by_name(finished, name):
    found = [s for s in finished if s.name == name]
    assert found, f"no span {name!r} among {[s.name for s in finished]}"
    return found


def _worker_spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_request_span_is_parent_of_worker_run_span(
    spans, start_worker, redis_url, monkeypatch, tmp_path, pool
):
    spans_file = _traced_worker(start_worker, tmp_path, pool)
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.otel_app import create_app, traced

    app = create_app()
    task_id = app.test_client().get("/send/21").get_data(as_text=True)
    with app.app_context():
        assert traced.AsyncResult(task_id).get(timeout=15) == 42

    request_span = _by_name(spans.get_finished_spans(), "GET /send/21")[0]
    send_span = _by_name(spans.get_finished_spans(), "send tests.apps.otel_app.traced")[0]
    assert send_span.kind is trace.SpanKind.PRODUCER
    assert send_span.parent.span_id == request_span.context.span_id
    assert send_span.attributes["messaging.message.id"] == task_id
    assert send_span.attributes["messaging.destination.name"] == "default"

    def run_spans():
        return [
            s for s in _worker_spans(spans_file) if s["name"] == "run tests.apps.otel_app.traced"
        ]

    run = wait_until(run_spans, 15, message="the worker's run span")[0]
    assert run["kind"] == "SpanKind.CONSUMER"
    assert run["context"]["trace_id"] == f"0x{request_span.context.trace_id:032x}"
    assert run["parent_id"] == _hex(send_span.context.span_id)
    attrs = run["attributes"]
    assert attrs["messaging.message.id"] == task_id
    assert attrs["messaging.destination.name"] == "default"
    assert attrs["messaging.system"] == "flask_taskq"
    assert attrs["flask_taskq.task.retries"] == 0
    assert attrs["flask_taskq.task.outcome"] == "SUCCESS"
    # the task's own span is a child of the run span
    inside = wait_until(
        lambda: [s for s in _worker_spans(spans_file) if s["name"] == "inside traced"], 5
    )[0]
    assert inside["parent_id"] == run["context"]["span_id"]


def test_retries_run_under_the_same_send_span(
    spans, start_worker, redis_url, monkeypatch, tmp_path
):
    spans_file = _traced_worker(start_worker, tmp_path, "threads")
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.otel_app import create_app, flaky

    app = create_app()
    task_id = app.test_client().get("/flaky/2").get_data(as_text=True)
    with app.app_context():
        assert flaky.AsyncResult(task_id).get(timeout=15) == 2
    send_span = _by_name(spans.get_finished_spans(), "send tests.apps.otel_app.flaky")[0]

    def runs():
        found = [
            s for s in _worker_spans(spans_file) if s["name"] == "run tests.apps.otel_app.flaky"
        ]
        return found if len(found) >= 3 else None

    found = wait_until(runs, 15, message="three run spans")
    assert {s["parent_id"] for s in found} == {_hex(send_span.context.span_id)}
    outcomes = sorted(
        (s["attributes"]["flask_taskq.task.retries"], s["attributes"]["flask_taskq.task.outcome"])
        for s in found
    )
    assert outcomes == [(0, "RETRY"), (1, "RETRY"), (2, "SUCCESS")]


def test_eager_run_span_is_child_of_send_span(spans, monkeypatch):
    monkeypatch.setenv("TASKQ_TEST_EAGER", "1")
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    from tests.apps.otel_app import create_app

    app = create_app()
    task_id = app.test_client().get("/send/5").get_data(as_text=True)
    finished = spans.get_finished_spans()
    request_span = _by_name(finished, "GET /send/5")[0]
    send_span = _by_name(finished, "send tests.apps.otel_app.traced")[0]
    run_span = _by_name(finished, "run tests.apps.otel_app.traced")[0]
    inside = _by_name(finished, "inside traced")[0]
    assert send_span.parent.span_id == request_span.context.span_id
    assert run_span.parent.span_id == send_span.context.span_id
    assert run_span.kind is trace.SpanKind.CONSUMER
    assert inside.parent.span_id == run_span.context.span_id
    assert run_span.attributes["messaging.message.id"] == task_id
    assert run_span.attributes["flask_taskq.task.outcome"] == "SUCCESS"
    assert run_span.attributes["flask_taskq.task.eager"] is True


def test_failure_sets_error_status(spans, monkeypatch):
    monkeypatch.setenv("TASKQ_TEST_EAGER", "1")
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    from flask import Flask

    from flask_taskq import TaskQueue

    tq = TaskQueue()

    @tq.task(name="otel.fails")
    def fails():
        raise LookupError("nope")

    app = Flask(__name__)
    app.config.update(TASKQ_BROKER_URL="memory://", TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)
    with app.app_context():
        fails.delay()
    run_span = _by_name(spans.get_finished_spans(), "run otel.fails")[0]
    assert run_span.status.status_code is trace.StatusCode.ERROR
    assert run_span.attributes["flask_taskq.task.outcome"] == "FAILURE"
    assert any(e.name == "exception" for e in run_span.events)


_NO_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
from flask import Flask
from flask_taskq import TaskQueue, tracing
from flask_taskq.extension import TaskQueue as TQ
assert tracing.ENABLED is False
assert not hasattr(TQ.send_task, "__wrapped__")
tq = TaskQueue()
@tq.task(name="plain")
def plain(x):
    return x
app = Flask(__name__)
app.config.update(TASKQ_BROKER_URL="memory://", TASKQ_ALWAYS_EAGER=True)
tq.init_app(app)
with app.app_context():
    assert plain.delay(3).get() == 3
loaded = [m for m, mod in sys.modules.items() if m.startswith("opentelemetry") and mod is not None]
assert loaded == [], loaded
print("ok")
"""


def test_nothing_imported_without_opentelemetry():
    """Without OpenTelemetry nothing is imported, the send path is not wrapped, and
    tasks run."""
    out = subprocess.run(
        [sys.executable, "-c", _NO_OTEL], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_bulk_send_is_one_span_parent_of_each_run(spans, monkeypatch):
    """``delay_many`` makes one send span; every message carries it, so each task's run
    span (here on the in-process worker of ``memory://``) is its child."""
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    from tests.apps.otel_app import create_app, traced

    app = create_app()
    tracer = trace.get_tracer("test")
    with app.app_context(), tracer.start_as_current_span("batch job"):
        results = traced.delay_many([i] for i in range(3))
    with app.app_context():
        assert [r.get(timeout=15) for r in results] == [0, 2, 4]

    def runs():
        found = [
            s for s in spans.get_finished_spans() if s.name == "run tests.apps.otel_app.traced"
        ]
        return found if len(found) == 3 else None

    found = wait_until(runs, 15, message="three run spans")
    send_spans = _by_name(spans.get_finished_spans(), "send tests.apps.otel_app.traced")
    assert len(send_spans) == 1
    job = _by_name(spans.get_finished_spans(), "batch job")[0]
    assert send_spans[0].parent.span_id == job.context.span_id
    assert {s.parent.span_id for s in found} == {send_spans[0].context.span_id}
    assert sorted(s.attributes["messaging.message.id"] for s in found) == sorted(
        r.id for r in results
    )


_UNCONFIGURED = """
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from flask_taskq import TaskQueue, tracing
from flask_taskq.worker.hooks.tracing import Tracing
tq = TaskQueue()
app = Flask(__name__)
app.config.update(TASKQ_BROKER_URL="memory://")
tq.init_app(app)
assert tracing.ENABLED and not tracing.configured()
assert not Tracing().applies(None, {})
with app.app_context(), trace.get_tracer("t").start_as_current_span("no-op"):
    _, message, _, _ = tq.build_message("some.task")
assert "traceparent" not in message.headers
trace.set_tracer_provider(TracerProvider())
assert tracing.configured() and Tracing().applies(None, {})
with app.app_context(), trace.get_tracer("t").start_as_current_span("real"):
    _, message, _, _ = tq.build_message("some.task")
assert message.headers["traceparent"].startswith("00-"), message.headers
print("ok")
"""


def test_installed_but_unconfigured_costs_no_span_and_no_header():
    """OpenTelemetry installed, no tracer provider: no trace headers and no tracing hook
    in the worker's plans; once a provider is set, both."""
    out = subprocess.run(
        [sys.executable, "-c", _UNCONFIGURED], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_chain_steps_continue_the_trace(spans, monkeypatch):
    """A chain's next step, sent by the worker after the first step's run, is sent under
    that run span, so the whole chain is one trace (in-process ``memory://`` worker)."""
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://")
    from flask_taskq import chain
    from tests.apps.otel_app import create_app, traced

    app = create_app()
    with app.app_context(), trace.get_tracer("test").start_as_current_span("job"):
        result = chain(traced.s(1), traced.s(), traced.s()).delay()
    with app.app_context():
        assert result.get(timeout=15) == 8

    def runs():
        found = [
            s for s in spans.get_finished_spans() if s.name == "run tests.apps.otel_app.traced"
        ]
        return found if len(found) == 3 else None

    found = wait_until(runs, 15, message="three run spans")
    finished = spans.get_finished_spans()
    job = _by_name(finished, "job")[0]
    by_id = {s.context.span_id: s for s in finished}
    assert {s.context.trace_id for s in found} == {job.context.trace_id}
    # each run's parent is a send span; the first send's parent is the job, the next
    # sends' parents are the previous runs
    sends = [by_id[s.parent.span_id] for s in found]
    assert all(s.name == "send tests.apps.otel_app.traced" for s in sends)
    send_parents = sorted((s.parent.span_id for s in sends), key=lambda i: i != job.context.span_id)
    assert send_parents[0] == job.context.span_id
    assert set(send_parents[1:]) <= {s.context.span_id for s in found}
