"""The workflows concern of the Redis store."""

from __future__ import annotations

from typing import Any

from ...keys import Keys


class RedisWorkflowStore:
    """:class:`~flask_taskq.store.workflows.WorkflowStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
