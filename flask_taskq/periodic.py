"""Periodic entries added, changed, paused, resumed and removed while beat runs:
``tq.periodic`` (this module's :class:`PeriodicManager`), ``flask taskq periodic`` and
the dashboard's periodic page.

Run-time entries live in the store (``state.store.beat``) as JSON specs; every change
raises a version counter that the leading beat polls, so it registers the change within
a second. Entries of ``TASKQ_BEAT_SCHEDULE`` and those declared in code are read-only
here: they can be listed and run now, not changed. See ``docs/beat.rst``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask

from .beat import BEAT_HEADER, Entry, dynamic_entries, read_schedule
from .schedules import Schedule, parse_cron, parse_interval, to_schedule

if TYPE_CHECKING:
    from .extension import TaskQueue
    from .result import AsyncResult
    from .state import AppState


class PeriodicError(ValueError):
    """A run-time periodic entry cannot be changed as asked (unknown entry, name taken,
    read-only entry, unknown task); the message is one line for people."""


def make_schedule(
    every: str | float | timedelta | None = None,
    cron: str | None = None,
    schedule: Schedule | None = None,
) -> Schedule:
    """One schedule from exactly one of ``every`` (``"30s"``, ``"5m"``, seconds or a
    ``timedelta``), ``cron`` (``"0 12 * * *"``) or ``schedule`` (an ``Interval`` or a
    ``crontab``)."""
    given = [v is not None for v in (every, cron, schedule)]
    if sum(given) != 1:
        raise PeriodicError("give exactly one of every, cron or schedule")
    if isinstance(every, str):
        return parse_interval(every)
    if every is not None:
        return to_schedule(every)
    if cron is not None:
        return parse_cron(cron)
    assert schedule is not None
    return to_schedule(schedule)


class PeriodicManager:
    """``tq.periodic``: the periodic entries of an app, changed at run time.

    Each method takes ``app`` (default: the current app, else the single app the
    TaskQueue is bound to, as for sending). Changes are seen by the leading beat within
    a second. ``ValueError`` (:class:`PeriodicError` for entries) explains bad input.

    .. versionadded:: 0.2
    """

    def __init__(self, taskqueue: TaskQueue) -> None:
        self.taskqueue = taskqueue

    def _state(self, app: Flask | None) -> AppState:
        from .state import resolve_state

        return resolve_state(app, self.taskqueue)

    def _static(self, state: AppState) -> dict[str, Entry]:
        return self.taskqueue.periodic_entries(state.app)

    def _check_task(self, task: str) -> None:
        known = self.taskqueue.tasks
        if known and task not in known:
            raise PeriodicError(
                f"unknown task {task!r} (the app knows: {', '.join(sorted(known))})"
            )

    def _dynamic(self, state: AppState, name: str) -> tuple[Entry, bool]:
        static = self._static(state)
        if name in static:
            raise PeriodicError(
                f"periodic entry {name!r} comes from TASKQ_BEAT_SCHEDULE or the app's code: "
                "it is read-only at run time"
            )
        _, entries, paused = dynamic_entries(state.store.beat, static)
        if name not in entries:
            raise PeriodicError(f"no periodic entry {name!r}")
        return entries[name], name in paused

    def add(
        self,
        name: str,
        task: str,
        *,
        every: str | float | timedelta | None = None,
        cron: str | None = None,
        schedule: Schedule | None = None,
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        catch_up: str = "one",
        paused: bool = False,
        app: Flask | None = None,
        **options: Any,
    ) -> Entry:
        """Add entry ``name`` sending ``task`` on one of ``every``/``cron``/``schedule``
        with ``args``/``kwargs`` and sending ``options`` (``queue``, ``priority``,
        ``expires``, ...). Its first run is one period after beat sees it."""
        state = self._state(app)
        if queue is not None:
            options["queue"] = queue
        entry = Entry(
            name=name,
            task=task,
            schedule=make_schedule(every, cron, schedule),
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            options=options,
            catch_up=catch_up,
        )
        self._check_task(task)
        if name in self._static(state):
            raise PeriodicError(
                f"periodic entry {name!r} exists in TASKQ_BEAT_SCHEDULE or the app's code"
            )
        if not state.store.beat.change_dynamic("add", name, entry.to_spec(paused)):
            raise PeriodicError(f"periodic entry {name!r} exists (change it with update)")
        return entry

    def update(
        self,
        name: str,
        *,
        task: str | None = None,
        every: str | float | timedelta | None = None,
        cron: str | None = None,
        schedule: Schedule | None = None,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        catch_up: str | None = None,
        app: Flask | None = None,
        **options: Any,
    ) -> Entry:
        """Change what is given of entry ``name``. A new schedule counts from when beat
        sees it; other changes keep the entry's place in its schedule."""
        state = self._state(app)
        old, paused = self._dynamic(state, name)
        new_options = {**old.options, **options}
        if queue is not None:
            new_options["queue"] = queue
        changes_schedule = any(v is not None for v in (every, cron, schedule))
        entry = Entry(
            name=name,
            task=old.task if task is None else task,
            schedule=make_schedule(every, cron, schedule) if changes_schedule else old.schedule,
            args=old.args if args is None else tuple(args),
            kwargs=old.kwargs if kwargs is None else dict(kwargs),
            options=new_options,
            catch_up=old.catch_up if catch_up is None else catch_up,
        )
        if task is not None:
            self._check_task(task)
        return self._replace(state, entry, paused)

    def _replace(self, state: AppState, entry: Entry, paused: bool) -> Entry:
        if not state.store.beat.change_dynamic("replace", entry.name, entry.to_spec(paused)):
            raise PeriodicError(f"no periodic entry {entry.name!r} (removed meanwhile?)")
        return entry

    def pause(self, name: str, app: Flask | None = None) -> bool:
        """Stop sending entry ``name`` until :meth:`resume`; False if it was paused."""
        state = self._state(app)
        entry, paused = self._dynamic(state, name)
        if not paused:
            self._replace(state, entry, True)
        return not paused

    def resume(self, name: str, app: Flask | None = None) -> bool:
        """Send entry ``name`` again, counting its due times from now (missed ones are
        not caught up); False if it was not paused."""
        state = self._state(app)
        entry, paused = self._dynamic(state, name)
        if paused:
            self._replace(state, entry, False)
        return paused

    def remove(self, name: str, app: Flask | None = None) -> None:
        """Delete entry ``name``; beat forgets its state."""
        state = self._state(app)
        self._dynamic(state, name)
        if not state.store.beat.change_dynamic("remove", name):
            raise PeriodicError(f"no periodic entry {name!r}")

    def run(self, name: str, app: Flask | None = None) -> AsyncResult:
        """Send entry ``name`` once now, outside its schedule (any entry, paused or
        read-only ones too); it shows as the entry's last run."""
        state = self._state(app)
        _, entries, _ = dynamic_entries(state.store.beat, self._static(state))
        entry = entries.get(name)
        if entry is None:
            raise PeriodicError(f"no periodic entry {name!r}")
        options = dict(entry.options)
        now = time.time()
        headers = {
            **(options.pop("headers", None) or {}),
            BEAT_HEADER: {"entry": name, "due": now, "manual": True},
        }
        with state.app.app_context():
            result = self.taskqueue.send_task(
                entry.task, entry.args, entry.kwargs, headers=headers, app=state.app, **options
            )
        state.store.beat.note_run(name, now, result.id)
        return result

    def list(self, app: Flask | None = None) -> list[dict[str, Any]]:
        """Every entry (static and run-time) with ``name``, ``task``, ``schedule``,
        ``catch_up``, ``dynamic``, ``paused``, ``last_run``, ``last_id``, ``last_state``
        (the state of that task's result, None when unknown) and ``next_run``; times are
        unix times (see ``read_schedule``)."""
        state = self._state(app)
        rows: list[dict[str, Any]] = read_schedule(state.app)["entries"]
        for row in rows:
            row["last_state"] = None
            if row["last_id"] and state.backend is not None:
                try:
                    row["last_state"] = self.taskqueue.AsyncResult(row["last_id"], state.app).state
                except Exception:  # a result store that is away must not hide the list
                    row["last_state"] = None
        return rows
