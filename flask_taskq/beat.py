"""Beat: sends periodic tasks when they are due, once per due time, however many beat
processes run.

Every beat competes for one leader lease in the store (``state.store.beat``: Redis, or
this process's memory for ``memory://``), renewed by its holder and released on a graceful
stop; only the holder sends. Each send first claims its due time
(:meth:`~flask_taskq.store.beat.BeatStore.claim`), which checks in the same step that the
caller still holds the lease, that the due time is after the entry's last handled one, and
sets the per-fire key (entry name + due time) once. Entry state (when each entry was
registered and its last due time) lives in the store, so a beat that takes over carries on
where the last one stopped. Entries added at run time (:mod:`flask_taskq.periodic`) live
in the store too; the leader polls their version counter every :data:`DYNAMIC_POLL`
seconds and registers a change at once. See ``docs/beat.rst``.
"""

from __future__ import annotations

import json
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

from flask import Flask

from . import signals
from .broker.blame import server_of
from .exceptions import BrokerConnectionError
from .message import SEND_TASK_OPTIONS, new_task_id
from .schedules import Interval, Schedule, get_timezone, parse_cron, to_schedule
from .store.beat import BeatStore, Claim, LeaseStatus, format_time

if TYPE_CHECKING:
    from .state import AppState

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
#: Longest a leader goes without looking whether run-time entries changed (seconds): one
#: read of a counter, so a change made with ``flask taskq periodic`` is seen within it.
DYNAMIC_POLL = 0.5
#: The fingerprint prefix of a paused entry: pausing and resuming change the fingerprint,
#: so a resumed entry counts its due times from when it was resumed.
PAUSED = "paused "
#: Seconds a per-fire key is kept.
FIRED_TTL = 3600
#: With ``catch_up="none"``, a due time later than this (seconds) counts as missed.
ON_TIME = 2.0
#: A due time this close (seconds) counts as due: the store keeps times to the microsecond,
#: so a due time read back may be a hair later than the clock that reached it.
EARLY = 0.001
#: Longest wait between attempts while the store is unreachable (seconds).
MAX_BACKOFF = 5.0
#: Message header beat adds: ``{"entry": <entry name>, "due": <due unix time>}``.
BEAT_HEADER = "taskq_beat"
#: Sending options a periodic entry may not set (each fire is a new task, sent now).
_FIXED_OPTIONS = frozenset({"task_id", "eta", "app", "_task"})
#: Keys of a ``TASKQ_BEAT_SCHEDULE`` entry.
_ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "catch_up"})

#: Errors of sending that mean "the broker is away for now", whatever the store.
_SEND_ERRORS: tuple[type[BaseException], ...] = (BrokerConnectionError, ConnectionError, OSError)


def _send_options() -> frozenset[str]:
    """The keyword options of ``TaskQueue.send_task`` an entry may pass on."""
    return SEND_TASK_OPTIONS - _FIXED_OPTIONS


def format_due(due: float) -> str:
    """A due time as it appears in keys and state: ``1700000000`` or ``1700000000.5``."""
    return format_time(due)


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

    def to_spec(self, paused: bool = False) -> str:
        """The entry as the JSON the store keeps of a run-time entry (see
        :meth:`from_spec`); ``TypeError`` when its arguments or options are not JSON."""
        schedule: dict[str, Any]
        if isinstance(self.schedule, Interval):
            schedule = {"every": self.schedule.seconds}
        else:
            schedule = {"cron": self.schedule.describe()}
        spec = {
            "task": self.task,
            "schedule": schedule,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "options": self.options,
            "catch_up": self.catch_up,
            "paused": paused,
        }
        try:
            return json.dumps(spec, sort_keys=True, allow_nan=False)
        except ValueError as exc:
            raise TypeError(f"periodic entry {self.name!r}: {exc}") from None

    @classmethod
    def from_spec(cls, name: str, text: str) -> tuple[Entry, bool]:
        """A run-time entry and whether it is paused, from the store's JSON
        (:meth:`to_spec`); ``ValueError`` for a spec that is not valid."""
        try:
            spec = json.loads(text)
            schedule = spec["schedule"]
            return cls(
                name=name,
                task=spec["task"],
                schedule=(
                    Interval(schedule["every"])
                    if "every" in schedule
                    else parse_cron(schedule["cron"])
                ),
                args=tuple(spec.get("args") or ()),
                kwargs=dict(spec.get("kwargs") or {}),
                options=dict(spec.get("options") or {}),
                catch_up=spec.get("catch_up", "one"),
            ), bool(spec.get("paused"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"periodic entry {name!r} in the store is not valid: {exc}") from None

    def fingerprint(self, tz: tzinfo, paused: bool = False) -> str:
        """What the store registers the entry with: its schedule's fingerprint, marked
        when paused."""
        return (PAUSED if paused else "") + self.schedule.fingerprint(tz)

    def next_run(self, since: float | None, last: float | None, now: float, tz: tzinfo) -> float:
        """The next due time given the entry's state in the store (counted from ``now``
        when beat has not registered the entry yet)."""
        if since is None:
            return self.schedule.next_due(now, tz)
        return self.schedule.next_due(max(since, last if last is not None else since), tz)


class Beat:
    """Sends ``app``'s periodic tasks (``TASKQ_BEAT_SCHEDULE`` and those declared with
    ``tq.periodic_task``/``tq.add_periodic_task``) when they are due.

    ``run()`` blocks until :meth:`stop`; :meth:`start` runs it in a thread. Any number of
    beats may run: one leads at a time. On ``memory://`` the lease and the entries live in
    the app's process, so run the beat there (``Beat(app).start()``). ``lease`` is how
    long (seconds) a crashed leader keeps the lead; ``clock`` gives the time used for
    schedules (``time.time``; tests pass their own).

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
        if not lease > 0:
            raise ValueError(f"the lease must be a positive number of seconds, not {lease!r}")
        self.app = app
        self.state = state
        self.taskqueue = state.taskqueue
        self.tz: tzinfo = get_timezone(state.config["TASKQ_TIMEZONE"])
        #: Entries of the app's code and ``TASKQ_BEAT_SCHEDULE`` (read-only at run time).
        self.static: dict[str, Entry] = state.taskqueue.periodic_entries(app)
        #: Every entry beat knows: the static ones and those added at run time.
        self.entries: dict[str, Entry] = dict(self.static)
        #: Run-time entries that are paused (registered, never sent).
        self.paused: frozenset[str] = frozenset()
        self.lease = float(lease)
        self.name = name or f"{os.getpid()}@{socket.gethostname()}"
        #: What this beat writes into the lease: unique even for two beats of one name.
        self.token = f"{self.name}#{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.store = state.store.beat
        #: Errors meaning the store or the broker is away for now: waited out.
        self.errors: tuple[type[BaseException], ...] = (*state.store.errors, *_SEND_ERRORS)
        self.is_leader = False
        self._synced = False
        self._renew_at = 0.0  # time.monotonic() of the next lease renewal
        self._version: int | None = None  # of the run-time entries loaded
        self._poll_at = 0.0  # time.monotonic() of the next look at that version
        self._upcoming: float | None = None  # the next due time of all entries
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
        """Send due tasks until :meth:`stop`; then give up the lease. Store (Redis)
        outages are logged and waited out."""
        logger.info("beat %s ready", self.name)
        backoff = 0.0
        while not self._stopped.is_set():
            try:
                wait = self.step()
            except self.errors as exc:
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                logger.warning(
                    "%s unreachable (%s); retrying in %.1fs", server_of(exc), exc, backoff
                )
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
        elif time.monotonic() >= self._poll_at:
            self._poll_at = time.monotonic() + DYNAMIC_POLL
            if self.store.dynamic_version() != self._version:
                self._sync()
            elif self._upcoming is not None and self.clock() + EARLY < self._upcoming:
                return self._wait(self._upcoming)  # a look at the version only: nothing due
        if not self.is_leader or not self._synced:
            return 0.0
        sent: list[tuple[str, float]] = []
        upcoming = self._upcoming = self._send_due(sent)
        if signals.beat_tick.receivers:
            try:
                signals.beat_tick.send(self, sent=sent)
            except Exception:  # a receiver's bug must not stall the schedule
                logger.exception("A beat_tick receiver raised")
        if not self.is_leader or not self._synced:
            return 0.0
        return self._wait(upcoming)

    def _wait(self, upcoming: float | None) -> float:
        until_due = upcoming - self.clock() if upcoming is not None else math.inf
        mono = time.monotonic()
        return max(0.0, min(until_due, self._renew_at - mono, self._poll_at - mono))

    # -- the lease ---------------------------------------------------------------------
    def _hold_lease(self) -> float:
        lease = self.store.hold_lease(self.token, self.lease)
        if lease.status is not LeaseStatus.HELD:
            if lease.status is LeaseStatus.TAKEN:
                logger.info("beat %s leads now (took the lease)", self.name)
                self._synced = False
            self.is_leader = True
            self._renew_at = time.monotonic() + self.lease / 3
            return 0.0
        if self.is_leader:
            self._lose()
        return min(HANDOVER_POLL, lease.ttl + 0.001) if lease.ttl > 0 else HANDOVER_POLL

    def _lose(self) -> None:
        logger.warning("beat %s lost the lease: another beat leads now", self.name)
        self.is_leader = False
        self._synced = False

    def release(self) -> None:
        """Give up the lease if this beat holds it, so another beat leads at once
        (:meth:`run` does when stopped)."""
        try:
            released = self.store.release_lease(self.token)
        except self.errors as exc:
            if self.is_leader:
                logger.warning(
                    "Could not give up the lease (%s); it expires within %gs", exc, self.lease
                )
        else:
            if released:
                logger.info("beat %s gave up the lease", self.name)
        self.is_leader = False

    # -- entries -----------------------------------------------------------------------
    def _load_dynamic(self) -> None:
        """Read the run-time entries from the store (those named as a static entry are
        ignored: the static one wins)."""
        before = self._version
        self._version, self.entries, self.paused = dynamic_entries(self.store, self.static)
        self._poll_at = time.monotonic() + DYNAMIC_POLL
        if self._version != before:
            logger.info(
                "beat %s: %d run-time periodic entries (version %d)",
                self.name,
                len(self.entries) - len(self.static),
                self._version,
            )

    def _sync(self) -> None:
        """Register the entries in the store (new or changed ones count from now) and
        forget entries no longer scheduled."""
        self._upcoming = None
        self._load_dynamic()
        current = [
            (name, entry.fingerprint(self.tz, name in self.paused), entry.task)
            for name, entry in self.entries.items()
        ]
        removed = self.store.sync_entries(self.token, self.clock(), current)
        if removed is None:
            self._lose()
            return
        self._synced = True
        if removed:
            logger.info("Removed periodic entries no longer scheduled: %s", ", ".join(removed))

    def _send_due(self, sent: list[tuple[str, float]]) -> float | None:
        """Send every entry that is due; return the next due time of all entries."""
        names = [name for name in self.entries if name not in self.paused]
        rows = self.store.entries(names)
        now = self.clock() + EARLY
        upcoming: list[float] = []
        with self.app.app_context():
            for name, row in zip(names, rows, strict=True):
                if row.since is None:  # the store lost the registry (Redis restarted empty)
                    self._synced = False
                    return None
                base = row.since if row.last is None else max(row.since, row.last)
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
                task_id = new_task_id()
                claimed = self._claim(entry, due, fire=True, task_id=task_id)
                if claimed is False:
                    break
                if claimed:
                    sent.append((entry.name, due))
                    self._send(entry, due, task_id)
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
        run_id = new_task_id() if send else None
        if self._claim(entry, latest, fire=send, task_id=run_id) and run_id:
            sent.append((entry.name, latest))
            self._send(entry, latest, run_id)
        return schedule.next_due(latest, tz)

    def _claim(
        self, entry: Entry, due: float, fire: bool, task_id: str | None = None
    ) -> bool | None:
        """Claim ``due`` for ``entry`` (``fire``) or mark it handled (not ``fire``): True
        when done, None when it was already handled, False when this beat may not (it
        lost the lease, or the registry must be rebuilt)."""
        claim = self.store.claim(
            self.token, entry.name, due, self.clock(), fire, FIRED_TTL, task_id
        )
        if claim is Claim.NOT_LEADER:
            self._lose()
            return False
        if claim is Claim.UNKNOWN:
            self._synced = False
            return False
        return True if claim is Claim.DONE else None

    def _send(self, entry: Entry, due: float, task_id: str) -> None:
        options = dict(entry.options)
        headers = {
            **(options.pop("headers", None) or {}),
            BEAT_HEADER: {"entry": entry.name, "due": due},
        }
        try:
            result = self.taskqueue.send_task(
                entry.task,
                entry.args,
                entry.kwargs,
                headers=headers,
                app=self.app,
                task_id=task_id,
                **options,
            )
        except self.errors as exc:
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


def dynamic_entries(
    store: BeatStore, static: Mapping[str, Entry]
) -> tuple[int, dict[str, Entry], frozenset[str]]:
    """The run-time entries' version, every entry (``static`` ones win on equal names)
    and the names of the paused ones. A spec that is not valid is logged and skipped."""
    version, specs = store.dynamic_entries()
    entries, paused = dict(static), set()
    for name, text in sorted(specs.items()):
        if name in static:
            logger.warning(
                "Run-time periodic entry %r is ignored: a static entry has its name", name
            )
            continue
        try:
            entry, is_paused = Entry.from_spec(name, text)
        except ValueError as exc:
            logger.error("%s; skipping it", exc)
            continue
        entries[name] = entry
        if is_paused:
            paused.add(name)
    return version, entries, frozenset(paused)


def read_schedule(app: Flask, now: float | None = None) -> dict[str, Any]:
    """What ``flask taskq inspect scheduled``, ``flask taskq periodic list`` and the
    dashboard show of beat: the leader (``leader``, the holder's token or None;
    ``lease_ttl`` seconds), and per entry its ``name``, ``task``, ``schedule``,
    ``catch_up``, ``last_run`` and ``next_run`` (unix times or None), ``last_id`` (the
    task id of the last run), ``dynamic`` (added at run time) and ``paused``, in
    ``timezone``."""
    state: AppState = app.extensions["taskq"]
    tz = get_timezone(state.config["TASKQ_TIMEZONE"])
    static = state.taskqueue.periodic_entries(app)
    _, entries, paused = dynamic_entries(state.store.beat, static)
    leader, ttl = state.store.beat.leader()
    rows = state.store.beat.entries(list(entries))
    now = time.time() if now is None else now
    out = []
    for (name, entry), row in zip(entries.items(), rows, strict=True):
        since, last = row.since, row.last
        is_paused = name in paused
        if row.schedule is not None and row.schedule != entry.fingerprint(tz, is_paused):
            since = last = None  # changed since a beat registered it: counts anew
        out.append(
            {
                "name": name,
                "task": entry.task,
                "schedule": entry.schedule.describe(),
                "catch_up": entry.catch_up,
                "last_run": row.run_at,
                "last_id": row.run_id,
                "next_run": None if is_paused else entry.next_run(since, last, now, tz),
                "dynamic": name not in static,
                "paused": is_paused,
            }
        )
    return {
        "timezone": str(tz),
        "leader": leader,
        "lease_ttl": ttl,
        "entries": out,
    }
