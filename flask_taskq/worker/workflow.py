"""The workflow hook: what the worker does after a task of a workflow reached its final
outcome (see ``flask_taskq/canvas.py`` for the headers it reads).

It runs before the message is acknowledged, so a worker that dies here runs the task and
this hook again on redelivery: chord bookkeeping is idempotent (and fires once), while
``link`` signatures may then be sent twice (at least once).

Chord state lives in the store (``state.store.workflows``): each member's value is recorded
idempotently, and the store fires the chord once (the Redis store claims the fired marker
and enqueues the callback in one Lua step; the memory store claims under its lock and the
callback is then enqueued here).

Each step that writes to the broker or the store (sending a link, recording a chord
member, firing or failing a chord, storing a result) is retried with backoff while it is
unreachable, until it succeeds or the worker stops; a step left undone then makes
:func:`after_task` return False, and the worker does not acknowledge the message, so it is
delivered again and the step is redone (SPEC §5.9). A step is never dropped because Redis
was away.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import events, states
from ..canvas import (
    HEADER_CHORD,
    HEADER_LINK,
    HEADER_LINK_ERROR,
    ChordError,
    Signature,
    chain,
    chord,
    group,
    link_headers,
    link_targets,
    send_next,
    signature,
)
from ..exceptions import BrokerConnectionError
from ..message import Message
from ..result import exception_meta
from ..store.workflows import Fired, Outgoing, WorkflowStore

if TYPE_CHECKING:
    from ..state import AppState
    from .execute import Outcome

logger = logging.getLogger("flask_taskq.worker")

#: How long a chord's "fired" marker is kept when results never expire (seconds).
FIRED_TTL = 7 * 24 * 3600

#: Errors that mean "the broker is away for now", whatever the store; with the store's
#: own (``state.store.errors``), the step is retried, not dropped.
RETRYABLE: tuple[type[BaseException], ...] = (BrokerConnectionError, ConnectionError)
#: Longest wait between two attempts of a step (seconds).
MAX_BACKOFF = 2.0

_T = TypeVar("_T")
#: Sends a message (``state.enqueue``'s shape).
Enqueue = Callable[[Message, bytes], object]
_stopping: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "taskq_workflow_stopping", default=None
)
_retryable: contextvars.ContextVar[tuple[type[BaseException], ...]] = contextvars.ContextVar(
    "taskq_workflow_retryable", default=RETRYABLE
)
#: Where chords are counted and callbacks sent instead of the app's store and transport
#: (eager mode: a memory store and the eager runner).
_target: contextvars.ContextVar[tuple[WorkflowStore | None, Enqueue | None]] = (
    contextvars.ContextVar("taskq_workflow_target", default=(None, None))
)


class StepPending(Exception):
    """A workflow step could not reach Redis before the worker stopped."""


def after_task(
    state: AppState,
    message: Message,
    outcome: Outcome,
    stopping: threading.Event | None = None,
    workflows: WorkflowStore | None = None,
    enqueue: Enqueue | None = None,
    sink: Callable[[str, int, bytes], bool] | None = None,
) -> bool:
    """Send what follows ``message`` now that its outcome is final. ``sink`` (a
    succeeded task's) may keep the plain sends of its links, to go out with its
    acknowledgement (``AppState.send_sink``).

    A step that meets an unreachable Redis is retried with backoff until it succeeds or
    ``stopping`` is set. Returns False when a step is left undone (the worker stopped
    first, or no ``stopping`` was given): the caller must not acknowledge the message, so
    that it is delivered again and the steps are redone. Other errors are logged, not
    raised (a bug in a step must not take the worker down); then it returns True.
    ``workflows`` and ``enqueue`` replace the app's store and transport (eager mode).
    """
    token = _stopping.set(stopping)
    target = _target.set((workflows, enqueue))
    errors = _retryable.set((*RETRYABLE, *(state.store.errors if workflows is None else ())))
    try:
        if outcome.status == states.SUCCESS:
            _succeeded(state, message, outcome, sink)
        elif outcome.status in (states.FAILURE, states.REVOKED) and not outcome.requeue:
            _failed(state, message, outcome)
    except StepPending as exc:
        logger.error(
            "Could not continue the workflow of task %s before stopping (%s): its "
            "message is not acknowledged and will be delivered again",
            message.id,
            exc,
        )
        return False
    except Exception:
        logger.exception("Could not continue the workflow of task %s", message.id)
    finally:
        _retryable.reset(errors)
        _target.reset(target)
        _stopping.reset(token)
    return True


def _persist(what: str, call: Callable[..., _T], *args: Any) -> _T:
    """``call(*args)``, retried with backoff while the store is away; :class:`StepPending`
    once the worker is stopping. Each step is idempotent or at-least-once, so running it
    again after an attempt whose reply was lost is safe."""
    stopping = _stopping.get()
    retryable = _retryable.get()
    delay = 0.1
    warned = False
    while True:
        try:
            result = call(*args)
        except retryable as exc:
            if stopping is None or stopping.is_set():
                raise StepPending(f"{what}: {exc}") from exc
            if not warned:
                logger.warning(
                    "Could not continue the workflow yet (%s: %s); retrying until Redis is back",
                    what,
                    exc,
                )
                warned = True
            stopping.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        if warned:
            logger.info("Redis is back: %s done", what)
        return result


def _succeeded(
    state: AppState,
    message: Message,
    outcome: Outcome,
    sink: Callable[[str, int, bytes], bool] | None = None,
) -> None:
    value = None
    if outcome.data is not None:
        value = state.serializer.loads(outcome.data).get("result")
    links = message.headers.get(HEADER_LINK, ())
    if links and sink is not None:
        state.send_sink.take = sink
    try:
        for data in links:
            _persist(f"sending the link of task {message.id}", send_next, data, (value,), state.app)
    finally:
        state.send_sink.take = None
    meta = message.headers.get(HEADER_CHORD)
    if meta:
        _persist(
            f"chord {meta['id']}: recording task {message.id}",
            _chord_member_done,
            state,
            meta,
            value,
        )


def _failed(state: AppState, message: Message, outcome: Outcome) -> None:
    error = outcome.exception
    doc = {
        "status": states.FAILURE,
        "date_done": time.time(),
        **(
            exception_meta(error)
            if error is not None
            else {
                "exc_type": "TaskRevokedError",
                "exc_module": "flask_taskq.exceptions",
                "exc_message": "revoked",
                "exc_args": ["revoked"],
                "traceback": "",
            }
        ),
    }
    for data in message.headers.get(HEADER_LINK_ERROR, ()):
        _persist(
            f"sending the link_error of task {message.id}",
            send_next,
            data,
            (message.id,),
            state.app,
        )
    for data in message.headers.get(HEADER_LINK, ()):
        targets = _persist(
            f"reading the steps after task {message.id}", link_targets, data, state.app
        )
        for target in targets:
            _fail_downstream(state, target, doc, message)
    meta = message.headers.get(HEADER_CHORD)
    if meta:
        why = f"{type(error).__name__}: {error}" if error is not None else "revoked"
        _chord_failed(state, meta, message, why)


def _fail_downstream(state: AppState, sig: Any, doc: dict[str, Any], cause: Message) -> None:
    """Mark the tasks that will now never run FAILURE with the cause's exception, so that
    the result of a chain fails like the task that stopped it."""
    if isinstance(sig, chain | group):
        for member in sig.tasks:
            _fail_downstream(state, member, doc, cause)
        return
    if isinstance(sig, chord):
        _fail_downstream(state, sig.header, doc, cause)
        _fail_downstream(state, sig.body, doc, cause)
        return
    assert isinstance(sig, Signature)
    if sig.id and state.backend is not None:
        data = state.serializer.dumps({**doc, "task": sig.name})
        _persist(
            f"failing task {sig.id}",
            state.backend.store_many,
            [(sig.id, data, True)],
            state.result_expires,
        )
    meta = (sig.options.get("headers") or {}).get(HEADER_CHORD)
    if meta:
        _chord_failed(state, meta, cause, f"{doc['exc_type']}: {doc['exc_message']}")
    for data in sig.options.get("link", ()):
        _fail_downstream(state, signature(data), doc, cause)


def _callback_message(state: AppState, callback: Signature, args: tuple[Any, ...]) -> Message:
    full_args, kwargs, opts = callback.call_options(args)
    link, link_error = opts.pop("link", None), opts.pop("link_error", None)
    if link is not None or link_error is not None:
        opts["headers"] = {**(opts.get("headers") or {}), **link_headers(link, link_error)}
    _, message, _, _ = state.taskqueue.build_message(
        callback.name, full_args, kwargs, app=state.app, **opts
    )
    return message


def _fire(state: AppState, chord_id: str, message: Message, body: bytes | None) -> bool:
    """Fire the chord once (see :meth:`~flask_taskq.store.workflows.WorkflowStore.fire_chord`):
    with ``body``, the callback message is enqueued; without, the chord is only marked
    fired (it failed). True for the one call that fired it."""
    ttl = state.result_expires or FIRED_TTL
    callback = Outgoing(message.queue, message.priority, body or b"", message.eta)
    workflows, enqueue = _target.get()
    fired = (workflows or state.store.workflows).fire_chord(
        chord_id, callback, ttl, send=body is not None
    )
    if fired is Fired.CLAIMED and body is not None:
        _persist(f"chord {chord_id}: sending its callback", enqueue or state.enqueue, message, body)
        if events.enabled(state):
            events.sent(state, message.id, message.task, message.queue, message.eta)
    return fired is not Fired.BEFORE


def _chord_member_done(state: AppState, meta: dict[str, Any], value: Any) -> None:
    size = int(meta["size"])
    stored = (_target.get()[0] or state.store.workflows).chord_member_done(
        meta["id"],
        int(meta["index"]),
        state.serializer.dumps(value),
        size,
        state.result_expires or 0,
    )
    if stored is None:
        return
    values = [state.serializer.loads(data) for data in stored]
    callback = signature(meta["callback"])
    message = _callback_message(state, callback, (values,))
    body = message.to_bytes(state.serializer, state.max_message_bytes)
    if _fire(state, meta["id"], message, body):
        logger.info("chord %s complete: sent %s[%s]", meta["id"], message.task, message.id)


def _chord_failed(state: AppState, meta: dict[str, Any], member: Message, why: str) -> None:
    """Fail the chord once: its result becomes a ChordError naming ``member`` (the task
    that failed) and the callback's ``link_error`` signatures are sent."""
    callback = signature(meta["callback"])
    message = _callback_message(state, callback, ([],))
    if not _persist(f"chord {meta['id']}: failing it", _fire, state, meta["id"], message, None):
        return
    exc = ChordError(
        f"chord {meta['id']} failed: member {meta['index']} failed: "
        f"task {member.task}[{member.id}] raised {why}"
    )
    doc = {"status": states.FAILURE, "date_done": time.time(), **exception_meta(exc)}
    if state.backend is not None and callback.id:
        data = state.serializer.dumps({**doc, "task": callback.name})
        _persist(
            f"chord {meta['id']}: storing its failure",
            state.backend.store_many,
            [(callback.id, data, True)],
            state.result_expires,
        )
    logger.error("%s", exc)
    for data in callback.options.get("link_error", ()):
        _persist(
            f"chord {meta['id']}: sending its link_error",
            send_next,
            data,
            (callback.id,),
            state.app,
        )
    for data in callback.options.get("link", ()):  # a chain after the chord never runs
        _fail_downstream(state, signature(data), doc, member)
