"""The workflow hook: what the worker does after a task of a workflow reached its final
outcome (see ``flask_taskq/canvas.py`` for the headers it reads).

It runs before the message is acknowledged, so a worker that dies here runs the task and
this hook again on redelivery: chord bookkeeping is idempotent (and fires once), while
``link`` signatures may then be sent twice (at least once).

Each step that writes to Redis (sending a link, recording a chord member, firing or failing
a chord, storing a result) is retried with backoff while Redis is unreachable, until it
succeeds or the worker stops; a step left undone then makes :func:`after_task` return
False, and the worker does not acknowledge the message, so it is delivered again and the
step is redone (SPEC §5.9). A step is never dropped because Redis was away.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from .. import states
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
    send_next,
    signature,
)
from ..exceptions import BrokerConnectionError
from ..keys import Keys
from ..message import Message
from ..redis_common import load_script
from ..result import exception_meta

if TYPE_CHECKING:
    from ..extension import AppState
    from .execute import Outcome

logger = logging.getLogger("flask_taskq.worker")

#: How long a chord's "fired" marker is kept when results never expire (seconds).
FIRED_TTL = 7 * 24 * 3600

_scripts: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


#: Errors that mean "Redis is away for now": the step is retried, not dropped.
RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    BrokerConnectionError,
    ConnectionError,
)
#: Longest wait between two attempts of a step (seconds).
MAX_BACKOFF = 2.0

_T = TypeVar("_T")
_stopping: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "taskq_workflow_stopping", default=None
)


class StepPending(Exception):
    """A workflow step could not reach Redis before the worker stopped."""


def after_task(
    state: AppState, message: Message, outcome: Outcome, stopping: threading.Event | None = None
) -> bool:
    """Send what follows ``message`` now that its outcome is final.

    A step that meets an unreachable Redis is retried with backoff until it succeeds or
    ``stopping`` is set. Returns False when a step is left undone (the worker stopped
    first, or no ``stopping`` was given): the caller must not acknowledge the message, so
    that it is delivered again and the steps are redone. Other errors are logged, not
    raised (a bug in a step must not take the worker down); then it returns True.
    """
    token = _stopping.set(stopping)
    try:
        if outcome.status == states.SUCCESS:
            _succeeded(state, message, outcome)
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
        _stopping.reset(token)
    return True


def _persist(what: str, call: Callable[..., _T], *args: Any) -> _T:
    """``call(*args)``, retried with backoff while Redis is away; :class:`StepPending`
    once the worker is stopping. Each step is idempotent or at-least-once, so running it
    again after an attempt whose reply was lost is safe."""
    stopping = _stopping.get()
    delay = 0.1
    warned = False
    while True:
        try:
            result = call(*args)
        except RETRYABLE as exc:
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


def _succeeded(state: AppState, message: Message, outcome: Outcome) -> None:
    value = None
    if outcome.data is not None:
        value = state.serializer.loads(outcome.data).get("result")
    for data in message.headers.get(HEADER_LINK, ()):
        _persist(f"sending the link of task {message.id}", send_next, data, (value,), state.app)
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
        _fail_downstream(state, signature(data), doc, message)
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


def _script(client: Any, name: str) -> Any:
    scripts = _scripts.setdefault(client, {})
    if name not in scripts:
        scripts[name] = load_script(client, name)
    return scripts[name]


def _client(state: AppState) -> Any:
    client = getattr(state.broker, "client", None)
    if client is None:
        raise RuntimeError("chords need the Redis broker")
    return client


def _callback_message(state: AppState, callback: Signature, args: tuple[Any, ...]) -> Message:
    full_args, kwargs, opts = callback.call_options(args)
    link, link_error = opts.pop("link", None), opts.pop("link_error", None)
    if link is not None or link_error is not None:
        opts["headers"] = {**(opts.get("headers") or {}), **link_headers(link, link_error)}
    _, message, _, _ = state.taskqueue.build_message(
        callback.name, full_args, kwargs, app=state.app, **opts
    )
    return message


def _fire(state: AppState, chord_id: str, message: Message, body: bytes) -> bool:
    """Claim the chord's fired marker and, with ``body``, enqueue it in the same step."""
    keys = Keys(state.key_prefix)
    client = _client(state)
    ttl = state.result_expires or FIRED_TTL
    fired = _script(client, "chord_fire")(
        keys=[
            keys.chord_fired(message.queue, chord_id),
            keys.stream(message.queue, message.priority),
            keys.delayed(message.queue),
        ],
        args=[body, message.eta or 0, time.time(), message.priority, ttl],
    )
    return bool(fired)


def _chord_member_done(state: AppState, meta: dict[str, Any], value: Any) -> None:
    keys = Keys(state.key_prefix)
    client = _client(state)
    size = int(meta["size"])
    reply = _script(client, "chord_member")(
        keys=[keys.chord_results(meta["id"])],
        args=[meta["index"], state.serializer.dumps(value), size, state.result_expires or 0],
    )
    if isinstance(reply, int):
        return
    stored = dict(zip(reply[::2], reply[1::2], strict=True))
    values = [state.serializer.loads(stored[str(i).encode()]) for i in range(size)]
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
    if not _persist(f"chord {meta['id']}: failing it", _fire, state, meta["id"], message, b""):
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
