"""The beat concern of the Redis store: Lua scripts ``beat_*.lua`` on keys tagged
``{beat}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...keys import Keys
from ...redis_common import load_script
from ..beat import Claim, EntryState, Lease, LeaseStatus, format_time

_LEASE = {2: LeaseStatus.TAKEN, 1: LeaseStatus.RENEWED, 0: LeaseStatus.HELD}
_CLAIM = {1: Claim.DONE, 0: Claim.BEFORE, -1: Claim.NOT_LEADER, -2: Claim.UNKNOWN}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class RedisBeatStore:
    """:class:`~flask_taskq.store.beat.BeatStore` over Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        names = ("lease", "release", "sync", "fire", "dynamic", "note_run")
        self._scripts = {name: load_script(client, f"beat_{name}") for name in names}

    def hold_lease(self, token: str, seconds: float) -> Lease:
        code, ttl = self._scripts["lease"](
            keys=[self.keys.beat_lease()], args=[token, int(seconds * 1000)]
        )
        return Lease(_LEASE[int(code)], max(int(ttl), 0) / 1000)

    def release_lease(self, token: str) -> bool:
        return bool(self._scripts["release"](keys=[self.keys.beat_lease()], args=[token]))

    def leader(self) -> tuple[str | None, float | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.beat_lease())
        pipe.pttl(self.keys.beat_lease())
        holder, ttl = pipe.execute()
        if not holder:
            return None, None
        return _text(holder), ttl / 1000 if ttl > 0 else None

    def sync_entries(
        self, token: str, now: float, entries: Sequence[tuple[str, str, str]]
    ) -> list[str] | None:
        known = {_text(n) for n in self.client.smembers(self.keys.beat_entries())}
        names = [name for name, _, _ in entries]
        removed = sorted(n for n in known - set(names) if n is not None)
        keys = [self.keys.beat_lease(), self.keys.beat_entries()]
        keys += [self.keys.beat_entry(n) for n in names + removed]
        args: list[Any] = [token, format_time(now), len(names)]
        for entry in entries:
            args += list(entry)
        args += removed
        if self._scripts["sync"](keys=keys, args=args) == -1:
            return None
        return removed

    def entries(self, names: Sequence[str]) -> list[EntryState]:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self.keys.beat_entry(name), "since", "last", "run_at", "schedule", "run_id")
        return [
            EntryState(_float(since), _float(last), _float(run_at), _text(schedule), _text(rid))
            for since, last, run_at, schedule, rid in pipe.execute()
        ]

    def claim(
        self,
        token: str,
        name: str,
        due: float,
        now: float,
        fire: bool,
        fired_ttl: int,
        task_id: str | None = None,
    ) -> Claim:
        text = format_time(due)
        args: list[Any] = [token, text, fired_ttl, format_time(now), "fire" if fire else "skip"]
        if task_id:
            args.append(task_id)
        code = self._scripts["fire"](
            keys=[
                self.keys.beat_lease(),
                self.keys.beat_entry(name),
                self.keys.beat_fired(name, text),
            ],
            args=args,
        )
        return _CLAIM[int(code)]

    def note_run(self, name: str, now: float, task_id: str) -> bool:
        keys = [self.keys.beat_entry(name)]
        return bool(self._scripts["note_run"](keys=keys, args=[format_time(now), task_id]))

    def dynamic_version(self) -> int:
        return int(self.client.get(self.keys.beat_dynamic_version()) or 0)

    def dynamic_entries(self) -> tuple[int, dict[str, str]]:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.beat_dynamic_version())
        pipe.hgetall(self.keys.beat_dynamic())
        version, specs = pipe.execute()
        return int(version or 0), {str(_text(k)): str(_text(v)) for k, v in specs.items()}

    def change_dynamic(self, mode: str, name: str, spec: str = "") -> bool:
        keys = [self.keys.beat_dynamic(), self.keys.beat_dynamic_version()]
        return bool(self._scripts["dynamic"](keys=keys, args=[mode, name, spec]))
