"""OpenTelemetry trace context across the queue (the ``flask-taskq[otel]`` extra).

When ``opentelemetry-api`` is installed, sending a task makes a ``send <task>`` span
(kind PRODUCER) and puts the W3C ``traceparent`` / ``tracestate`` of that span in the
message's ``headers``; the worker runs the task in a ``run <task>`` span (kind CONSUMER)
whose parent is the sender's span (:mod:`.worker.hooks.tracing`). Spans go wherever the
app's tracer provider sends them; with none configured they are OpenTelemetry's no-op
spans.

Without OpenTelemetry nothing here imports it or costs anything: :data:`ENABLED` is
resolved once, at import, without importing the package, and every caller tests it
before calling in. Installed but with no tracer provider set, a send only asks whether
one is set, and the worker leaves its tracing hook out.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .message import Message

#: Whether ``opentelemetry-api`` can be imported (found without importing it).
try:
    ENABLED: bool = importlib.util.find_spec("opentelemetry.trace") is not None
except (ImportError, ValueError):
    ENABLED = False

#: What ``messaging.system`` says (no well-known value fits a task queue of its own).
SYSTEM = "flask_taskq"
#: The W3C trace-context headers a message may carry.
TRACE_HEADERS = ("traceparent", "tracestate")

F = TypeVar("F", bound=Callable[..., Any])

#: In a worker's thread, between a task's run and its next one: the OpenTelemetry context
#: of the run span it finished, so that what the worker sends for that task afterwards
#: (a chain's next step, callbacks) continues its trace (see :func:`settling`).
_after_run: contextvars.ContextVar[Any] = contextvars.ContextVar("taskq_after_run", default=None)


#: ``opentelemetry.trace`` once :func:`_api` imported it.
_trace: Any = None


@functools.lru_cache(maxsize=1)
def _api() -> Any:
    """The OpenTelemetry API modules, imported on first use."""
    from opentelemetry import context, propagate, trace

    from .version import __version__

    global _trace
    trace.get_tracer_provider()  # a provider named by OTEL_PYTHON_TRACER_PROVIDER is set now
    tracer = trace.get_tracer("flask_taskq", __version__)
    _trace = trace
    return context, propagate, trace, tracer


def configured() -> bool:
    """Whether the app set a tracer provider (not the API's default proxy)."""
    trace = _trace or _api()[2]
    # asked on every .delay(): the API's global, read directly, answers the common "none
    # set" without get_tracer_provider()'s environment lookup (made once, by _api())
    if getattr(trace, "_TRACER_PROVIDER", trace) is None:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def traced_send(send: F) -> F:
    """Wrap a sending method of ``TaskQueue`` (whose first argument is the task name) in a
    ``send <task>`` span, current while it builds and enqueues the message(s), so that
    :func:`stamp` puts its context in their headers. Without OpenTelemetry, ``send``
    itself."""
    if not ENABLED:
        return send

    @functools.wraps(send)
    def wrapper(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if not configured():
            return send(self, name, *args, **kwargs)
        _, _, trace, tracer = _api()
        parent = None
        if not trace.get_current_span().get_span_context().is_valid:
            parent = _after_run.get()
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "flask_taskq.task.name": name,
        }
        with tracer.start_as_current_span(
            f"send {name}", context=parent, kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            return send(self, name, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def stamp(message: Message) -> Message:
    """``message`` with the current span's trace context in its headers (unchanged when
    no span is current); the current span, if it is a ``send`` span, learns the
    message's id and queue."""
    _, propagate, trace, _ = _api()
    span = trace.get_current_span()
    parent = None
    if not span.get_span_context().is_valid:
        parent = _after_run.get()
        if parent is None:
            return message
    elif span.is_recording():
        span.set_attribute("messaging.message.id", message.id)
        span.set_attribute("messaging.destination.name", message.queue)
    headers = dict(message.headers)
    propagate.inject(headers, context=parent)
    return message.replace(headers=headers)


def start_run(message: Message, eager: bool = False) -> tuple[Any, Any]:
    """Start the ``run <task>`` span of ``message`` (child of the context in its headers)
    and make it current; return ``(span, token)`` for :func:`leave` and :func:`end_run`."""
    _after_run.set(None)
    context, propagate, trace, tracer = _api()
    headers = message.headers
    parent = propagate.extract(headers) if "traceparent" in headers else None
    span = tracer.start_span(
        f"run {message.task}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "messaging.destination.name": message.queue,
            "messaging.message.id": message.id,
            "flask_taskq.task.name": message.task,
            "flask_taskq.task.retries": message.retries,
            "flask_taskq.task.eager": eager,
        },
    )
    token = context.attach(trace.set_span_in_context(span))
    return span, token


def leave(token: Any) -> None:
    """Make the span current before :func:`start_run` current again."""
    context, _, _, _ = _api()
    context.detach(token)


def settling(span: Any) -> None:
    """Until this thread's next run: sends made without a current span (the worker's, for
    the task just run) are children of ``span``. Worker threads only: in eager mode the
    sender's own span is still current."""
    _, _, trace, _ = _api()
    _after_run.set(trace.set_span_in_context(span))


def end_run(span: Any, outcome: str, error: BaseException | None = None) -> None:
    """End a run span with the task's outcome (a state name, e.g. ``SUCCESS``); a failure
    sets the span's status to ERROR and records the exception."""
    _, _, trace, _ = _api()
    span.set_attribute("flask_taskq.task.outcome", outcome)
    if outcome == "FAILURE":
        if error is not None:
            span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__ if error else ""))
    span.end()
