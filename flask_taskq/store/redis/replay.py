"""The replay concern of the Redis store.

``taskq:seen:{<task id>}`` holds ``<attempt> <stream> <entry id>`` of the start recorded
last; ``seen.lua`` checks and records it in one script call (and, on a first delivery,
refuses a task whose result ``taskq:result:{<task id>}`` is final), ``seen_forget.lua``
deletes it only where it is the given start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...keys import Keys
from ...redis_common import load_script, reload_scripts
from ..replay import Start


class RedisReplayStore:
    """:class:`~flask_taskq.store.replay.ReplayStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._check: Any = None
        self._forget: Any = None

    def _where(self, start: Start) -> str:
        return f"{self.keys.stream(start.queue, start.priority)} {start.entry_id}"

    def start(self, start: Start, ttl: int, first_delivery: bool) -> str | None:
        """See :meth:`ReplayStore.start`: one script call."""
        if self._check is None:
            self._check = load_script(self.client, "seen")
        why = self._check(
            keys=[self.keys.seen(start.task_id), self.keys.result(start.task_id)],
            args=[start.attempt, self._where(start), ttl, 1 if first_delivery else 0],
        )
        if why is None:
            return None
        return why.decode(errors="replace") if isinstance(why, bytes) else str(why)

    def forget_starts(self, starts: Sequence[Start]) -> None:
        """See :meth:`ReplayStore.forget_starts`: one round trip."""
        if not starts:
            return
        if self._forget is None:
            self._forget = load_script(self.client, "seen_forget")
        pipe = self.client.pipeline(transaction=False)
        for start in starts:
            self._forget(
                keys=[self.keys.seen(start.task_id)],
                args=[start.attempt, self._where(start)],
                client=pipe,
            )
        replies = pipe.execute(raise_on_error=False)
        reload_scripts(self.client, [self._forget], replies)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def forget(self, task_ids: Sequence[str]) -> None:
        """See :meth:`ReplayStore.forget`."""
        if task_ids:
            self.client.delete(*[self.keys.seen(task_id) for task_id in task_ids])
