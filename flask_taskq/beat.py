"""Beat: sends periodic tasks when they are due, once per due time, however many beat
processes run.

Every beat competes for one leader lease in Redis (``SET NX PX``, renewed by its holder,
released on a graceful stop); only the holder sends. Each send first claims its due time
in ``beat_fire.lua``, which checks in the same step that the caller still holds the lease,
that the due time is after the entry's last handled one, and sets the per-fire key
(entry name + due time) with ``SET NX``. Entry state (when each entry was registered and
its last due time) lives in Redis, so a beat that takes over carries on where the last
one stopped. See ``docs/beat.rst``.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import redis
from flask import Flask

from . import signals
from .keys import Keys
from .redis_common import connect, load_script
from .schedules import Schedule, get_timezone, to_schedule

if TYPE_CHECKING:
    from .extension import AppState

logger = logging.getLogger("flask_taskq.beat")

#: How an entry treats due times that passed while no beat was sending (see docs/beat.rst).
CATCH_UP = ("one", "none", "all")
#: Seconds a leader holds the lease without renewing it (renewed every third of it): a
#: crashed or frozen leader is replaced within this time. 5 s halves the ticks a crash
#: loses against 10 s, while a false failover still needs the leader stalled for over
#: 3 s (measured trade-off in docs/beat.rst, "Choosing the lease").
DEFAULT_LEASE = 5.0
#: Longest a waiting beat sleeps between looks at the lease (a released lease is taken
#: over within this time).
HANDOVER_POLL = 0.5
#: Seconds a per-fire key is kept.
FIRED_TTL = 3600
#: With ``catch_up="none"``, a due time later than this (seconds) counts as missed.
ON_TIME = 2.0
#: A due time this close (seconds) counts as due: Redis keeps times to the microsecond, so
#: a due time read back may be a hair later than the clock that reached it.
EARLY = 0.001
#: Longest wait between attempts while Redis is unreachable (seconds).
MAX_BACKOFF = 5.0
#: Message header beat adds: ``{"entry": <entry name>, "due": <due unix time>}``.
BEAT_HEADER = "taskq_beat"
#: Sending options a periodic entry may not set (each fire is a new task, sent now).
_FIXED_OPTIONS = frozenset({"task_id", "eta", "app", "_task"})
#: Keys of a ``TASKQ_BEAT_SCHEDULE`` entry.
_ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "catch_up"})

CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


def _send_options() -> frozenset[str]:
    """The keyword options of ``TaskQueue.send_task`` an entry may pass on."""
    from .extension import TaskQueue

    params = inspect.signature(TaskQueue.send_task).parameters.values()
    return frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY) - _FIXED_OPTIONS


def format_due(due: float) -> str:
    """A due time as it appears in keys and state: ``1700000000`` or ``1700000000.5``."""
    return f"{due:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Entry:
    """One periodic task: send ``task`` with ``args``/``kwargs`` and sending ``options``
    (``queue``, ``priority``, ``expires``, ...) each time ``schedule`` is due.

    ``catch_up`` says what happens to due times missed while no beat ran: ``"one"``
    (default) sends one run for them, ``"none"`` sends none, ``"all"`` sends every one.

    .. versionadded:: 0.2
    """

    name: str
    task: str
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    catch_up: str = "one"

    def __post_init__(self) -> None:
        where = f"periodic entry {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a periodic entry needs a name, not {self.name!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"{where}: task must be a task name, not {self.task!r}")
        if self.catch_up not in CATCH_UP:
            raise ValueError(
                f"{where}: catch_up must be one of {', '.join(CATCH_UP)}, not {self.catch_up!r}"
            )
        unknown = set(self.options) - _send_options()
        if unknown:
            raise ValueError(
                f"{where}: option(s) {', '.join(sorted(unknown))} cannot be "
                f"used (allowed: {', '.join(sorted(_send_options()))})"
            )

    @classmethod
    def from_config(cls, name: str, spec: Mapping[str, Any]) -> Entry:
        """An entry from ``TASKQ_BEAT_SCHEDULE[name]`` (Celery's ``beat_schedule`` format
        plus ``catch_up``)."""
        where = f"TASKQ_BEAT_SCHEDULE[{name!r}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a dict with 'task' and 'schedule'")
        unknown = set(spec) - _ENTRY_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_ENTRY_KEYS))})"
            )
        missing = [k for k in ("task", "schedule") if k not in spec]
        if missing:
            raise ValueError(f"{where}: missing {' and '.join(missing)}")
        try:
            return cls(
                name=name,
                task=spec["task"],
                schedule=to_schedule(spec["schedule"]),
                args=tuple(spec.get("args") or ()),
                kwargs=dict(spec.get("kwargs") or {}),
                options=dict(spec.get("options") or {}),
                catch_up=spec.get("catch_up", "one"),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    def next_run(self, since: float | None, last: float | None, now: float, tz: tzinfo) -> float:
        """The next due time given the entry's state in Redis (counted from ``now`` when
        beat has not registered the entry yet)."""
        if since is None:
            return self.schedule.next_due(now, tz)
        return self.schedule.next_due(max(since, last if last is not None else since), tz)


class Beat:
    """Sends ``app``'s periodic tasks (``TASKQ_BEAT_SCHEDULE`` and those declared with
    ``tq.periodic_task``/``tq.add_periodic_task``) when they are due.

    ``run()`` blocks until :meth:`stop`; :meth:`start` runs it in a thread. Any number of
    beats may run: one leads at a time. ``lease`` is how long (seconds) a crashed leader
    keeps the lead; ``clock`` gives the time used for schedules (``time.time``; tests
    pass their own).

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        app: Flask,
        *,
        lease: float = DEFAULT_LEASE,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        state: AppState | None = app.extensions.get("taskq")
        if state is None:
            raise RuntimeError(
                f"the app {app.name!r} has no TaskQueue: call tq.init_app(app) first"
            )
        if state.is_memory:
            raise ValueError("beat needs a Redis broker: TASKQ_BROKER_URL is memory://")
        if not lease > 0:
            raise ValueError(f"the lease must be a positive number of seconds, not {lease!r}")
        self.app = app
        self.state = state
        self.taskqueue = state.taskqueue
        self.tz: tzinfo = get_timezone(state.config["TASKQ_TIMEZONE"])
        self.entries: dict[str, Entry] = state.taskqueue.periodic_entries(app)
        self.lease = float(lease)
        self.name = name or f"{os.getpid()}@{socket.gethostname()}"
        #: What this beat writes into the lease: unique even for two beats of one name.
        self.token = f"{self.name}#{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.keys = Keys(state.key_prefix)
        self.client = connect(state.broker_url)
        self._scripts = {
            name: load_script(self.client, f"beat_{name}")
            for name in ("lease", "release", "sync", "fire")
        }
        self.is_leader = False
        self._synced = False
        self._renew_at = 0.0  # time.monotonic() of the next lease renewal
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        """One line saying what this beat runs."""
        return (
            f"taskq beat {self.name}: {len(self.entries)} periodic entr"
            f"{'y' if len(self.entries) == 1 else 'ies'}, lease {self.lease:g}s, "
            f"timezone {self.tz}"
        )

    # -- running ---------------------------------------------------------------------------
    def run(self) -> None:
        """Send due tasks until :meth:`stop`; then give up the lease. Redis outages are
        logged and waited out."""
        logger.info("beat %s ready", self.name)
        backoff = 0.0
        while not self._stopped.is_set():
            try:
                wait = self.step()
            except CONNECTION_ERRORS as exc:
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                logger.warning("Redis unreachable (%s); retrying in %.1fs", exc, backoff)
                self._renew_at = 0.0  # the lease may have gone meanwhile: check it first
                wait = backoff
            except Exception:
                logger.exception("Beat round failed; retrying in %.0fs", MAX_BACKOFF)
                self._renew_at = 0.0
                wait = MAX_BACKOFF
            else:
                if backoff:
                    logger.warning("Reconnected to Redis")
                    backoff = 0.0
            self._stopped.wait(wait)
        self.release()
        logger.info("beat %s stopped", self.name)

    def start(self) -> threading.Thread:
        """Run in a daemon thread (``flask taskq worker --beat``); returns the thread."""
        self._thread = threading.Thread(target=self.run, name="taskq-beat", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        """Stop at once (giving up the lease); with ``timeout``, wait that long for the
        thread :meth:`start` began."""
        self._stopped.set()
        if timeout is not None and self._thread is not None:
            self._thread.join(timeout)

    def step(self) -> float:
        """One round: take or renew the lease and, as leader, send what is due. Returns the
        seconds until the next round is needed."""
        if not self.is_leader or time.monotonic() >= self._renew_at:
            wait = self._hold_lease()
            if not self.is_leader:
                return wait
        if not self._synced:
            self._sync()
        if not self.is_leader or not self._synced:
            return 0.0
        sent: list[tuple[str, float]] = []
        upcoming = self._send_due(sent)
        if signals.beat_tick.receivers:
            try:
                signals.beat_tick.send(self, sent=sent)
            except Exception:  # a receiver's bug must not stall the schedule
                logger.exception("A beat_tick receiver raised")
        if not self.is_leader or not self._synced:
            return 0.0
        until_due = upcoming - self.clock() if upcoming is not None else math.inf
        return max(0.0, min(until_due, self._renew_at - time.monotonic()))

    # -- the lease ---------------------------------------------------------------------
    def _hold_lease(self) -> float:
        code, ttl = self._scripts["lease"](
            keys=[self.keys.beat_lease()], args=[self.token, int(self.lease * 1000)]
        )
        if code:
            if code == 2:
                logger.info("beat %s leads now (took the lease)", self.name)
                self._synced = False
            self.is_leader = True
            self._renew_at = time.monotonic() + self.lease / 3
            return 0.0
        if self.is_leader:
            self._lose()
        ttl = int(ttl)
        return min(HANDOVER_POLL, ttl / 1000 + 0.001) if ttl > 0 else HANDOVER_POLL

    def _lose(self) -> None:
        logger.warning("beat %s lost the lease: another beat leads now", self.name)
        self.is_leader = False
        self._synced = False

    def release(self) -> None:
        """Give up the lease if this beat holds it, so another beat leads at once
        (:meth:`run` does when stopped)."""
        try:
            released = self._scripts["release"](keys=[self.keys.beat_lease()], args=[self.token])
        except CONNECTION_ERRORS as exc:
            if self.is_leader:
                logger.warning(
                    "Could not give up the lease (%s); it expires within %gs", exc, self.lease
                )
        else:
            if released:
                logger.info("beat %s gave up the lease", self.name)
        self.is_leader = False

    # -- entries -----------------------------------------------------------------------
    def _sync(self) -> None:
        """Register the entries in Redis (new or changed ones count from now) and forget
        entries no longer scheduled."""
        known = {n.decode() for n in self.client.smembers(self.keys.beat_entries())}
        removed = sorted(known - set(self.entries))
        names = list(self.entries)
        keys = [self.keys.beat_lease(), self.keys.beat_entries()]
        keys += [self.keys.beat_entry(n) for n in names + removed]
        args: list[Any] = [self.token, format_due(self.clock()), len(names)]
        for name in names:
            entry = self.entries[name]
            args += [name, entry.schedule.fingerprint(self.tz), entry.task]
        args += removed
        if self._scripts["sync"](keys=keys, args=args) == -1:
            self._lose()
            return
        self._synced = True
        if removed:
            logger.info("Removed periodic entries no longer scheduled: %s", ", ".join(removed))

    def _send_due(self, sent: list[tuple[str, float]]) -> float | None:
        """Send every entry that is due; return the next due time of all entries."""
        names = list(self.entries)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self.keys.beat_entry(name), "since", "last")
        rows = pipe.execute()
        now = self.clock() + EARLY
        upcoming: list[float] = []
        with self.app.app_context():
            for name, (since, last) in zip(names, rows, strict=True):
                if since is None:  # Redis lost the registry (restarted without its data)
                    self._synced = False
                    return None
                base = float(since) if last is None else max(float(since), float(last))
                following = self._send_entry(self.entries[name], base, now, sent)
                if not self.is_leader or not self._synced or self._stopped.is_set():
                    return None
                upcoming.append(following)
        return min(upcoming, default=None)

    def _send_entry(
        self, entry: Entry, base: float, now: float, sent: list[tuple[str, float]]
    ) -> float:
        """Send ``entry`` for its due times up to ``now`` (per its catch_up) after its last
        handled due time ``base``; return its next due time."""
        schedule, tz = entry.schedule, self.tz
        due = schedule.next_due(base, tz)
        if due > now:
            return due
        if entry.catch_up == "all":
            while due <= now and self.is_leader and not self._stopped.is_set():
                if time.monotonic() >= self._renew_at:
                    self._hold_lease()
                claimed = self._claim(entry, due, "fire")
                if claimed is False:
                    break
                if claimed:
                    sent.append((entry.name, due))
                    self._send(entry, due)
                due = schedule.next_due(due, tz)
            return due
        latest = schedule.last_due(base, now, tz)
        assert latest is not None
        send = entry.catch_up == "one" or now - latest <= ON_TIME
        if due < latest or not send:
            logger.info(
                "Periodic entry %r missed its due times from %s to %s: %s",
                entry.name,
                self._when(due),
                self._when(latest),
                "sending one run" if send else "skipping them (catch_up 'none')",
            )
        if self._claim(entry, latest, "fire" if send else "skip") and send:
            sent.append((entry.name, latest))
            self._send(entry, latest)
        return schedule.next_due(latest, tz)

    def _claim(self, entry: Entry, due: float, mode: str) -> bool | None:
        """Claim ``due`` for ``entry`` (``mode`` ``"fire"``) or mark it handled
        (``"skip"``): True when done, None when it was already handled, False when this
        beat may not (it lost the lease, or the registry must be rebuilt)."""
        text = format_due(due)
        code = self._scripts["fire"](
            keys=[
                self.keys.beat_lease(),
                self.keys.beat_entry(entry.name),
                self.keys.beat_fired(entry.name, text),
            ],
            args=[self.token, text, FIRED_TTL, format_due(self.clock()), mode],
        )
        if code == -1:
            self._lose()
            return False
        if code == -2:
            self._synced = False
            return False
        return True if code == 1 else None

    def _send(self, entry: Entry, due: float) -> None:
        options = dict(entry.options)
        headers = {
            **(options.pop("headers", None) or {}),
            BEAT_HEADER: {"entry": entry.name, "due": due},
        }
        try:
            result = self.taskqueue.send_task(
                entry.task, entry.args, entry.kwargs, headers=headers, app=self.app, **options
            )
        except CONNECTION_ERRORS as exc:
            logger.error(
                "Could not send periodic entry %r due %s (%s): this run is lost",
                entry.name,
                self._when(due),
                exc,
            )
            raise
        except Exception as exc:
            logger.error(
                "Could not send periodic entry %r (%s) due %s: %s: %s",
                entry.name,
                entry.task,
                self._when(due),
                type(exc).__name__,
                exc,
            )
        else:
            logger.info(
                "Sent periodic entry %r (%s) due %s: task %s",
                entry.name,
                entry.task,
                self._when(due),
                result.id,
            )

    def _when(self, due: float) -> str:
        return datetime.fromtimestamp(due, self.tz).isoformat(timespec="milliseconds")


def read_schedule(app: Flask, now: float | None = None) -> dict[str, Any]:
    """What ``flask taskq inspect scheduled`` shows of beat: the leader (``leader``, the
    holder's token or None; ``lease_ttl`` seconds), and per entry its ``name``, ``task``,
    ``schedule``, ``catch_up``, ``last_run`` and ``next_run`` (unix times or None), in
    ``timezone``."""
    state: AppState = app.extensions["taskq"]
    tz = get_timezone(state.config["TASKQ_TIMEZONE"])
    entries = state.taskqueue.periodic_entries(app)
    keys = Keys(state.key_prefix)
    client: redis.Redis = state.broker.client  # type: ignore[attr-defined]
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.beat_lease())
    pipe.pttl(keys.beat_lease())
    for name in entries:
        pipe.hmget(keys.beat_entry(name), "since", "last", "run_at", "schedule")
    leader, ttl, *rows = pipe.execute()
    now = time.time() if now is None else now
    out = []
    for (name, entry), (since, last, run_at, fingerprint) in zip(
        entries.items(), rows, strict=True
    ):
        if fingerprint is not None and fingerprint.decode() != entry.schedule.fingerprint(tz):
            since = last = None  # changed since a beat registered it: counts anew
        out.append(
            {
                "name": name,
                "task": entry.task,
                "schedule": entry.schedule.describe(),
                "catch_up": entry.catch_up,
                "last_run": float(run_at) if run_at is not None else None,
                "next_run": entry.next_run(
                    float(since) if since is not None else None,
                    float(last) if last is not None else None,
                    now,
                    tz,
                ),
            }
        )
    return {
        "timezone": str(tz),
        "leader": leader.decode() if leader else None,
        "lease_ttl": ttl / 1000 if leader and ttl > 0 else None,
        "entries": out,
    }
