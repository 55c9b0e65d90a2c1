"""The one message type that travels through the broker.

Envelope (version 1), encoded by the configured serializer into the stream field ``m``::

    {"v": 1, "id": "<task id>", "task": "<task name>", "args": [...], "kwargs": {...},
     "queue": "default", "priority": 5, "eta": null | <unix time>,
     "expires": null | <unix time>, "retries": 0, "headers": {...}, "sent": <unix time>}

A field may be absent (or null): it then has its default (:data:`DEFAULTS`). Senders
leave out the fields at their default, so a no-op task's envelope is
``{"v":1,"id":"...","task":"...","sent":...}``; envelopes spelling out every field, as
flask-taskq 0.1 wrote them, decode the same.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .exceptions import DecodeError, MessageTooLarge
from .serializer import JSONSerializer, Serializer

VERSION = 1
#: The keyword options of ``TaskQueue.send_task`` (besides ``app``): what a caller may
#: set on a message when sending it. Periodic entries are checked against it.
SEND_TASK_OPTIONS = frozenset(
    {"countdown", "eta", "expires", "queue", "priority", "task_id", "headers", "link", "link_error"}
)


#: The value of each envelope field that may be left out, and is when it has it.
DEFAULTS: dict[str, Any] = {
    "args": [],
    "kwargs": {},
    "queue": "default",
    "priority": 5,
    "eta": None,
    "expires": None,
    "retries": 0,
    "headers": {},
}


#: The variant digit of a version-4 UUID (``8``-``b``) for each random hex digit.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def new_task_id() -> str:
    """A random (version 4) UUID as a string, like ``str(uuid.uuid4())`` at less than half
    its cost (it is made for every message sent)."""
    h = os.urandom(16).hex()
    # 122 random bits: the version digit is set to 4, the variant digit to 8-b
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def new_task_ids(count: int) -> list[str]:
    """``count`` ids of :func:`new_task_id`, from one read of the system's random source."""
    h = os.urandom(16 * count).hex()
    variant = _VARIANT
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{variant[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def sent_json(sent: float) -> bytes:
    """``sent`` to the millisecond as JSON writes ``round(sent, 3)``, at a third of the
    cost (both round correctly to 3 decimals; repr leaves out trailing zeros)."""
    text = b"%.3f" % sent
    text = text.rstrip(b"0")
    return text + b"0" if text[-1:] == b"." else text


#: Encodes the envelope of a plain send: ``(task id, args, kwargs, expires, sent)``.
PlainEncoder = Callable[[str, Any, dict[str, Any], float | None, float], bytes]


def plain_encoder(
    serializer: Serializer, task: str, queue: str, priority: int
) -> PlainEncoder | None:
    """For the standard JSON serializer, a function that encodes the envelope of a message
    of ``task`` to ``queue`` at ``priority`` with no other option (``.delay()``'s short
    road; its task id made by :func:`new_task_id`) from parts encoded once: the same bytes
    as ``serializer.dumps(envelope(...))`` at a fraction of its cost. None for other
    serializers."""
    if type(serializer) is not JSONSerializer:
        return None
    dumps = serializer.dumps
    task_part = b'","task":' + dumps(task)
    fixed = b""
    if queue != DEFAULTS["queue"]:
        fixed += b',"queue":' + dumps(queue)
    if priority != DEFAULTS["priority"]:
        fixed += b',"priority":' + dumps(priority)
    middle = task_part + fixed

    def encode(
        task_id: str, args: Any, kwargs: dict[str, Any], expires: float | None, sent: float
    ) -> bytes:
        # task_id comes from new_task_id (hex digits and dashes): nothing to escape.
        # Field order as envelope(): v, id, task, args, kwargs, queue, priority, expires, sent
        if not args and not kwargs and expires is None:
            return b'{"v":1,"id":"%b%b,"sent":%b}' % (task_id.encode(), middle, sent_json(sent))
        return b'{"v":1,"id":"%b%b%b%b%b%b,"sent":%b}' % (
            task_id.encode(),
            task_part,
            b',"args":' + dumps(list(args)) if args else b"",
            b',"kwargs":' + dumps(kwargs) if kwargs else b"",
            fixed,
            b"" if expires is None else b',"expires":' + float.__repr__(expires).encode(),
            sent_json(sent),
        )

    return encode


@dataclass(slots=True)
class Message:
    """A task message. Treat it as immutable: :meth:`replace` makes a changed copy. (It
    is not a frozen dataclass because one is made for every message a worker runs, and
    a frozen one costs five times as much to make.)"""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 5
    eta: float | None = None
    expires: float | None = None
    retries: int = 0
    headers: dict[str, Any] = field(default_factory=dict)
    sent: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The envelope as plain data."""
        return envelope(
            self.id,
            self.task,
            self.args,
            self.kwargs,
            self.queue,
            self.priority,
            self.eta,
            self.expires,
            self.retries,
            self.headers,
            self.sent or time.time(),
        )

    def to_bytes(self, serializer: Serializer, max_bytes: int | None = None) -> bytes:
        """Encode the message; raise ``TypeError`` naming an argument that cannot be encoded
        and ``MessageTooLarge`` if the result exceeds ``max_bytes``."""
        try:
            data = serializer.dumps(self.to_dict())
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unencodable_argument(self, serializer, exc) from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise MessageTooLarge(
                f"message for task {self.task!r} is {len(data)} bytes, over "
                f"TASKQ_MAX_MESSAGE_BYTES={max_bytes}; pass a reference (an id, a URL) "
                "instead of the data"
            )
        return data

    @classmethod
    def from_bytes(cls, data: bytes, serializer: Serializer) -> Message:
        """Decode a message or raise ``DecodeError`` saying why it cannot be: the body
        must be a v1 envelope whose fields have their types (see the module docstring)."""
        if not data:
            raise DecodeError(
                "undecodable message body: it is empty (a stream entry without its 'm' field?)"
            )
        if data[:4] == b"tq1:" and not serializer.name.endswith("+hmac-sha256"):
            raise DecodeError(
                "bad signature: the message is signed but TASKQ_SIGNING_KEY is not set here"
            )
        try:
            body = serializer.loads(data)
        except DecodeError:
            raise
        except Exception as exc:  # any decoder failure means the same: poison
            raise DecodeError(f"undecodable message body ({serializer.name}): {exc}") from exc
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise DecodeError("not a flask-taskq v1 message envelope")
        message = _well_formed(cls, body)
        if message is not None:
            return message
        try:
            return cls(
                id=_text(body, "id"),
                task=_text(body, "task"),
                args=tuple(_typed(body, "args", (list, tuple), ())),
                kwargs=dict(_typed(body, "kwargs", dict, {})),
                queue=_text(body, "queue", "default"),
                priority=_integer(body, "priority", 5),
                eta=_time(body, "eta"),
                expires=_time(body, "expires"),
                retries=_integer(body, "retries", 0),
                headers=dict(_typed(body, "headers", dict, {})),
                sent=_time(body, "sent") or 0.0,
            )
        except KeyError as exc:
            raise DecodeError(f"malformed message envelope: missing {exc}") from exc

    def replace(self, **changes: Any) -> Message:
        """A copy with some fields changed."""
        return replace(self, **changes)


def _well_formed(cls: type[Message], body: dict[str, Any]) -> Message | None:
    """The message of an envelope whose fields all have their usual types (what every
    sender writes), checked by ``type()`` alone; None otherwise, and the field-by-field
    check of :meth:`Message.from_bytes` then says what is wrong. A worker decodes every
    message: this is several times cheaper."""
    get = body.get
    id, task, sent = get("id"), get("task"), get("sent")
    if not (type(id) is str and id and type(task) is str and task):
        return None
    if len(body) == 4 and type(sent) is float and math.isfinite(sent):  # v, id, task, sent
        return cls(id, task, (), {}, "default", 5, None, None, 0, {}, sent)
    args, kwargs, headers = get("args"), get("kwargs"), get("headers")
    queue, priority, retries = get("queue") or "default", get("priority"), get("retries")
    eta, expires = get("eta"), get("expires")
    if (
        (args is None or type(args) is list)
        and (kwargs is None or type(kwargs) is dict)
        and (headers is None or type(headers) is dict)
        and type(queue) is str
        and (priority is None or (type(priority) is int and priority >= 0))
        and (retries is None or (type(retries) is int and retries >= 0))
        and (sent is None or _finite(sent))
        and (eta is None or _finite(eta))
        and (expires is None or _finite(expires))
    ):
        return cls(
            id,
            task,
            tuple(args) if args else (),
            kwargs if kwargs is not None else {},
            queue,
            5 if priority is None else priority,
            None if eta is None else float(eta),
            None if expires is None else float(expires),
            retries or 0,
            headers if headers is not None else {},
            float(sent) if sent else 0.0,
        )
    return None


def _finite(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and math.isfinite(value)


def envelope(
    id: str,
    task: str,
    args: Any,
    kwargs: dict[str, Any],
    queue: str,
    priority: int,
    eta: float | None,
    expires: float | None,
    retries: int,
    headers: dict[str, Any],
    sent: float,
) -> dict[str, Any]:
    """The version-1 envelope of a message, as plain data (also built without a
    :class:`Message` on the producer's hot path).

    Fields at their default value (see :data:`DEFAULTS`) are left out: a reader of any
    version 1 fills them in, and a queued message costs half the memory. ``sent`` is
    kept to the millisecond."""
    body: dict[str, Any] = {"v": VERSION, "id": id, "task": task}
    if args:
        body["args"] = list(args)
    if kwargs:
        body["kwargs"] = kwargs
    if queue != "default":
        body["queue"] = queue
    if priority != 5:
        body["priority"] = priority
    if eta is not None:
        body["eta"] = eta
    if expires is not None:
        body["expires"] = expires
    if retries:
        body["retries"] = retries
    if headers:
        body["headers"] = headers
    body["sent"] = round(sent, 3)
    return body


def _typed(body: dict[str, Any], name: str, types: type | tuple[type, ...], default: Any) -> Any:
    """Field ``name`` of an envelope, of one of ``types``; ``default`` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, types):
        raise DecodeError(
            f"malformed message envelope: {name!r} is "
            f"{type(value).__name__} {_short(value)}, not "
            f"{_names(types)}"
        )
    return value


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name) if default is not None else body[name]
    if not value and default is not None:  # absent, null or empty: the default
        return default
    if not isinstance(value, str) or not value:
        raise DecodeError(
            f"malformed message envelope: {name!r} is {_short(value)}, not a non-empty string"
        )
    return value


def _integer(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DecodeError(
            f"malformed message envelope: {name!r} is {_short(value)}, not a non-negative integer"
        )
    return value


def _time(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecodeError(
            f"malformed message envelope: {name!r} is {_short(value)}, "
            "not a unix time (a number) or null"
        )
    return float(value)


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unencodable_argument(message: Message, serializer: Serializer, exc: Exception) -> TypeError:
    named: list[tuple[str, Any]] = [(f"args[{i}]", a) for i, a in enumerate(message.args)]
    named += [(f"kwargs[{k!r}]", v) for k, v in message.kwargs.items()]
    named.append(("headers", message.headers))
    for label, value in named:
        try:
            serializer.dumps(value)
        except (TypeError, ValueError, OverflowError) as inner:
            return TypeError(
                f"argument {label} of task {message.task!r} cannot be encoded by the "
                f"{serializer.name} serializer: {inner}"
            )
    return TypeError(f"message for task {message.task!r} cannot be encoded: {exc}")
