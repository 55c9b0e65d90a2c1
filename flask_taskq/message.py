"""The one message type that travels through the broker.

Envelope (version 1), encoded by the configured serializer into the stream field ``m``::

    {"v": 1, "id": "<task id>", "task": "<task name>", "args": [...], "kwargs": {...},
     "queue": "default", "priority": 5, "eta": null | <unix time>,
     "expires": null | <unix time>, "retries": 0, "headers": {...}, "sent": <unix time>}
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .exceptions import DecodeError, MessageTooLarge
from .serializer import Serializer

VERSION = 1


def new_task_id() -> str:
    """A random (version 4) UUID as a string, like ``str(uuid.uuid4())`` at less than half
    its cost (it is made for every message sent)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable task message."""

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
        return envelope(self.id, self.task, self.args, self.kwargs, self.queue,
                        self.priority, self.eta, self.expires, self.retries, self.headers,
                        self.sent or time.time())

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
        """Decode a message or raise ``DecodeError`` saying why it cannot be."""
        if data[:4] == b"tq1:" and not serializer.name.endswith("+hmac-sha256"):
            raise DecodeError("bad signature: the message is signed but TASKQ_SIGNING_KEY "
                              "is not set here")
        try:
            body = serializer.loads(data)
        except DecodeError:
            raise
        except Exception as exc:  # any decoder failure means the same: poison
            raise DecodeError(f"undecodable message body ({serializer.name}): {exc}") from exc
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise DecodeError("not a flask-taskq v1 message envelope")
        try:
            return cls(
                id=str(body["id"]),
                task=str(body["task"]),
                args=tuple(body.get("args") or ()),
                kwargs=dict(body.get("kwargs") or {}),
                queue=body.get("queue") or "default",
                priority=int(body.get("priority", 5)),
                eta=body.get("eta"),
                expires=body.get("expires"),
                retries=int(body.get("retries", 0)),
                headers=dict(body.get("headers") or {}),
                sent=float(body.get("sent") or 0.0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"malformed message envelope: {exc!r}") from exc

    def replace(self, **changes: Any) -> Message:
        """A copy with some fields changed."""
        return replace(self, **changes)


def envelope(id: str, task: str, args: Any, kwargs: dict[str, Any], queue: str,
             priority: int, eta: float | None, expires: float | None, retries: int,
             headers: dict[str, Any], sent: float) -> dict[str, Any]:
    """The version-1 envelope of a message, as plain data (also built without a
    :class:`Message` on the producer's hot path)."""
    return {"v": VERSION, "id": id, "task": task, "args": list(args), "kwargs": kwargs,
            "queue": queue, "priority": priority, "eta": eta, "expires": expires,
            "retries": retries, "headers": headers, "sent": sent}


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
