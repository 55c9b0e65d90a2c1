"""The app of the OpenTelemetry tests (``flask --app tests.apps.otel_app``).

In a worker process (``TASKQ_TEST_SPANS`` set) it configures a tracer provider that
writes every ended span as a JSON line to that file, so the test can read the worker's
spans; in the test process the test configures the SDK's in-memory exporter itself.
Each request runs in a SERVER span, as OpenTelemetry's Flask instrumentation makes one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from flask import Flask, g
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from flask_taskq import TaskQueue

tq = TaskQueue()
tracer = trace.get_tracer("tests.otel_app")


class JsonLinesExporter(SpanExporter):
    """Appends each span (``ReadableSpan.to_json``) as one line to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS


@tq.task
def traced(x):
    with tracer.start_as_current_span("inside traced"):
        return x * 2


@tq.task(bind=True, max_retries=3, default_retry_delay=0.05)
def flaky(self, failures):
    """Retry ``failures`` times, then succeed."""
    if self.request.retries < failures:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries}"))
    return self.request.retries


def create_app() -> Flask:
    path = os.environ.get("TASKQ_TEST_SPANS")
    if path:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
        trace.set_tracer_provider(provider)
    app = Flask(__name__)
    app.config.update(
        TASKQ_BROKER_URL=os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0"),
        TASKQ_ALWAYS_EAGER=os.environ.get("TASKQ_TEST_EAGER") == "1",
    )
    tq.init_app(app)

    @app.before_request
    def start_request_span() -> None:
        from flask import request

        span = tracer.start_span(f"GET {request.path}", kind=trace.SpanKind.SERVER)
        g.otel = (span, context.attach(trace.set_span_in_context(span)))

    @app.teardown_request
    def end_request_span(exc: BaseException | None) -> None:
        span, token = g.pop("otel")
        context.detach(token)
        span.end()

    @app.route("/send/<int:x>")
    def send(x: int) -> str:
        return traced.delay(x).id

    @app.route("/flaky/<int:n>")
    def send_flaky(n: int) -> str:
        return flaky.delay(n).id

    return app
