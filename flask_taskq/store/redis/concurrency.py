"""The concurrency concern of the Redis store: ``concurrency.lua`` on the keys of one
concurrency key (one hash tag, so one Redis Cluster slot), the registry of keys at
their limit a sorted set of its own."""

from __future__ import annotations

from typing import Any

from ...keys import Keys
from ...redis_common import load_script
from ..concurrency import KeyState, Parked, Slots


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisConcurrencyStore:
    """:class:`~flask_taskq.store.concurrency.ConcurrencyStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._slots = load_script(client, "concurrency")
        self._woken = load_script(client, "concurrency_woken")
        self._renew = load_script(client, "concurrency_renew")
        self._forget = load_script(client, "concurrency_forget")
        self._stats = load_script(client, "concurrency_stats")

    def _call(
        self, key: str, op: str, task_id: str, limit: str, lease: float, entry: bytes
    ) -> Slots:
        reply = self._slots(
            keys=self.keys.concurrency(key), args=[op, task_id, limit, _ms(lease), entry]
        )
        granted, holders, waiting, waking = (int(v) for v in reply[:4])
        rest = reply[4:]
        woken = [Parked.unpack(_text(rest[i]), _bytes(rest[i + 1])) for i in range(0, len(rest), 2)]
        return Slots(None if granted < 0 else bool(granted), holders, waiting + waking, woken)

    def acquire(self, key: str, limit: int, lease: float, message: Parked) -> Slots:
        """See :meth:`ConcurrencyStore.acquire`: one script call."""
        return self._call(key, "acquire", message.task_id, str(limit), lease, message.pack())

    def release(self, key: str, task_id: str, lease: float) -> Slots:
        """See :meth:`ConcurrencyStore.release`: one script call."""
        return self._call(key, "release", task_id, "", lease, b"")

    def wake(self, key: str, lease: float) -> Slots:
        """See :meth:`ConcurrencyStore.wake`: one script call."""
        return self._call(key, "wake", "", "", lease, b"")

    def renew(self, key: str, task_ids: list[str], lease: float) -> int:
        """See :meth:`ConcurrencyStore.renew`."""
        holders = self.keys.concurrency(key)[0]
        return int(self._renew(keys=[holders], args=[_ms(lease), *task_ids]))

    def woken(self, key: str, task_ids: list[str]) -> None:
        """See :meth:`ConcurrencyStore.woken`."""
        keys = self.keys.concurrency(key)
        self._woken(keys=[keys[2], keys[3]], args=task_ids)

    def note(self, key: str) -> None:
        """See :meth:`ConcurrencyStore.note`."""
        self.client.zincrby(self.keys.concurrency_keys(), 1, key)

    def noted(self) -> dict[str, float]:
        """See :meth:`ConcurrencyStore.noted`."""
        raw = self.client.zrange(self.keys.concurrency_keys(), 0, -1, withscores=True)
        return {_text(k): float(v) for k, v in raw}

    def forget(self, key: str, mark: float) -> None:
        """See :meth:`ConcurrencyStore.forget`."""
        self._forget(keys=[self.keys.concurrency_keys()], args=[key, repr(mark)])

    def state(self, key: str) -> KeyState:
        """See :meth:`ConcurrencyStore.state`: one read-only script call."""
        limit, holders, waiting, waking = (
            int(v) for v in self._stats(keys=self.keys.concurrency(key))
        )
        return KeyState(key, limit, holders, waiting + waking)
