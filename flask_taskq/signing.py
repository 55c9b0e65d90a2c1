"""HMAC-SHA256 signatures on messages and results (``TASKQ_SIGNING_KEY``).

A signed payload is ``b"tq1:" + 32-byte HMAC-SHA256(key, data) + data``. With a key set,
workers refuse unsigned and forged messages (they go to the dead-letter store); without
one, signed messages are refused too, since their signature cannot be checked.
"""

from __future__ import annotations

import hashlib
import hmac
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
        digest = data[len(MAGIC):len(MAGIC) + DIGEST_SIZE]
        payload = data[len(MAGIC) + DIGEST_SIZE:]
        if not hmac.compare_digest(digest, self._digest(payload)):
            raise BadSignature("bad signature: the payload was not signed with this key")
        return self.inner.loads(payload)
