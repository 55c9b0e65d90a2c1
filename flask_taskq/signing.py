"""HMAC-SHA256 signatures on messages and results (``TASKQ_SIGNING_KEY``).

A signed payload is ``b"tq1:" + 32-byte HMAC-SHA256(key, data) + data``. With a key set,
workers refuse unsigned and forged messages (they go to the dead-letter store); without
one, signed messages are refused too, since their signature cannot be checked.

:func:`peek` reads the task name and id of a refused message without trusting them, so
that its dead letter can say what it claimed to be.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from .exceptions import DecodeError
from .serializer import Serializer

MAGIC = b"tq1:"
DIGEST_SIZE = 32


class BadSignature(DecodeError):
    """A payload's signature is missing or does not match the signing key."""


class SignedSerializer:
    """Wraps a serializer: signs what it encodes, verifies before it decodes."""

    def __init__(self, inner: Serializer, key: str | bytes) -> None:
        self.inner = inner
        self.name = f"{inner.name}+hmac-sha256"
        self._key = key.encode() if isinstance(key, str) else key

    def _digest(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        data = self.inner.dumps(value)
        return MAGIC + self._digest(data) + data

    def loads(self, data: bytes) -> Any:
        if not data.startswith(MAGIC):
            raise BadSignature("bad signature: the payload is not signed")
        digest = data[len(MAGIC) : len(MAGIC) + DIGEST_SIZE]
        payload = data[len(MAGIC) + DIGEST_SIZE :]
        if not hmac.compare_digest(digest, self._digest(payload)):
            raise BadSignature("bad signature: the payload was not signed with this key")
        return self.inner.loads(payload)


#: Longest task name or id :func:`peek` returns (longer ones are cut and marked).
PEEK_MAX = 200


def peek(data: bytes) -> tuple[str, str] | None:
    """The ``(task name, task id)`` a message body *claims*, read without checking its
    signature, or None when they cannot be read. Best effort, never raises.

    For display only (dead letters of bad signatures): anyone who can write to Redis can
    put any name and id in a body. A signature prefix is skipped, not checked. Only JSON
    (with the standard library) and msgpack bodies are read, whatever ``TASKQ_SERIALIZER``
    is: an unverified pickle must never be loaded.
    """
    try:
        if not isinstance(data, (bytes, bytearray)):
            return None
        data = bytes(data)
        if data.startswith(MAGIC):
            data = data[len(MAGIC) + DIGEST_SIZE :]
        body = _loads_safely(data)
        if not isinstance(body, dict):
            return None
        task, task_id = body.get("task"), body.get("id")
        if not isinstance(task, str) or not isinstance(task_id, str) or not task_id:
            return None
        return _clip(task), _clip(task_id)
    except Exception:  # any undecodable body: nothing to show
        return None


def _loads_safely(data: bytes) -> Any:
    """JSON or msgpack (both build plain data only, never objects), else None."""
    if data[:1] in (b"{", b"[", b" "):
        return json.loads(data.decode("utf-8"))
    try:
        import msgpack
    except ImportError:
        return None
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _clip(text: str) -> str:
    text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text if len(text) <= PEEK_MAX else text[: PEEK_MAX - 1] + "…"


def unverified_reason(reason: str, data: bytes) -> str:
    """``reason`` followed by the task name and id that ``data`` claims, labelled as
    unverified (``reason`` alone when the body does not say)."""
    claimed = peek(data)
    if claimed is None:
        return reason
    return f"{reason} (unverified: claims task {claimed[0]!r}, id {claimed[1]!r})"
