"""The revocations concern of the Redis store."""

from __future__ import annotations

from typing import Any

from ...keys import Keys


class RedisRevocationStore:
    """:class:`~flask_taskq.store.revocations.RevocationStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
