"""When periodic tasks are due: :class:`crontab` (Celery's fields and meanings) and
:class:`Interval` (every N seconds).

A schedule turns the time of a previous due time into the next one. Due times are unix
times (float seconds); a crontab's are whole minutes in the beat's timezone
(``TASKQ_TIMEZONE``). Cron matching is done by croniter; this module adds Celery's syntax
and the daylight-saving rules described in ``docs/beat.rst``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, tzinfo
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = [
    "Interval",
    "Schedule",
    "crontab",
    "get_timezone",
    "parse_cron",
    "parse_interval",
    "to_schedule",
]

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = {
    **{d: i for i, d in enumerate(_DAYS)},
    **{
        name: i
        for i, name in enumerate(
            ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
        )
    },
}
_MONTH_NAMES = {
    **{m: i + 1 for i, m in enumerate(_MONTHS)},
    **{
        name: i + 1
        for i, name in enumerate(
            (
                "january",
                "february",
                "march",
                "april",
                "may",
                "june",
                "july",
                "august",
                "september",
                "october",
                "november",
                "december",
            )
        )
    },
}

#: field name -> (lowest, highest value, names accepted for values)
_FIELDS: dict[str, tuple[int, int, dict[str, int]]] = {
    "minute": (0, 59, {}),
    "hour": (0, 23, {}),
    "day_of_month": (1, 31, {}),
    "month_of_year": (1, 12, _MONTH_NAMES),
    "day_of_week": (0, 7, _DAY_NAMES),  # 0 and 7 are Sunday
}
#: One comma-separated part of a field: ``*``, ``5``, ``mon``, ``1-5``, each with ``/step``.
_PART = re.compile(r"\A(?:(?P<star>\*)|(?P<lo>\w+)(?:-(?P<hi>\w+))?)(?:/(?P<step>\d+))?\Z")

FieldValue = int | str | Iterable[int | str]


def get_timezone(value: str | tzinfo | None) -> tzinfo:
    """The ``tzinfo`` named by ``TASKQ_TIMEZONE`` (an IANA name such as
    ``"Europe/Berlin"``, or a ``tzinfo``); ``ValueError`` for an unknown name."""
    if isinstance(value, tzinfo):
        return value
    try:
        return ZoneInfo(value or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"TASKQ_TIMEZONE {value!r} is not a known IANA time zone name (e.g. 'Europe/Berlin')"
        ) from exc


@runtime_checkable
class Schedule(Protocol):
    """What beat needs of a schedule."""

    def next_due(self, after: float, tz: tzinfo) -> float:
        """The first due time strictly after ``after`` (a unix time that is a previous due
        time, or the time the entry was registered)."""

    def last_due(self, after: float, until: float, tz: tzinfo) -> float | None:
        """The latest due time in ``(after, until]`` of the chain that :meth:`next_due`
        starts at ``after``, or None when there is none."""

    def describe(self) -> str:
        """The schedule for people (``inspect scheduled``)."""

    def fingerprint(self, tz: tzinfo) -> str:
        """Text that changes when the due times change: beat restarts an entry's count
        when its fingerprint changes."""


class Interval:
    """Due every ``seconds`` (a number or a ``timedelta``), counted from the previous due
    time; the first is one interval after beat first saw the entry."""

    def __init__(self, seconds: float | timedelta) -> None:
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"an interval is a number of seconds or a timedelta, not {seconds!r}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"an interval must be positive, not {seconds!r}")
        self.seconds = float(seconds)

    def next_due(self, after: float, tz: tzinfo) -> float:
        return round(after + self.seconds, 6)

    def last_due(self, after: float, until: float, tz: tzinfo) -> float | None:
        steps = math.floor(round((until - after) / self.seconds, 9))
        while steps >= 1:  # rounding may put the last step just past ``until``
            due = round(after + steps * self.seconds, 6)
            if due <= until:
                return due
            steps -= 1
        return None

    def describe(self) -> str:
        return f"every {self.seconds:g}s"

    def fingerprint(self, tz: tzinfo) -> str:
        return f"every {self.seconds!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interval) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(("Interval", self.seconds))

    def __repr__(self) -> str:
        return f"Interval({self.seconds:g})"


def _number(field: str, token: str) -> int:
    low, high, names = _FIELDS[field]
    token = token.lower()
    if token.isdigit():
        value = int(token)
    elif token in names:
        value = names[token]
    elif token[:3] in names and names is _DAY_NAMES:
        value = names[token[:3]]
    else:
        raise ValueError(f"crontab {field}: {token!r} is not a number or a known name")
    if not low <= value <= high:
        raise ValueError(f"crontab {field}: {value} is out of range {low}-{high}")
    return value


def _in_order(items: Iterable[int | str]) -> list[int | str]:
    """Numbers in numeric order, then names."""
    return sorted(items, key=lambda v: (isinstance(v, str), v if isinstance(v, int) else 0, str(v)))


def _cron_field(field: str, value: FieldValue) -> str:
    """``value`` (Celery's forms) as a cron field of numbers only."""
    if isinstance(value, bool):
        raise TypeError(f"crontab {field}: {value!r} is not a valid value")
    if isinstance(value, int):
        return str(_number(field, str(value)))
    if not isinstance(value, str):
        items = list(value)
        if not items:
            raise ValueError(f"crontab {field}: an empty collection never matches")
        return ",".join(_cron_field(field, item) for item in _in_order(items))
    text = value.strip().lower()
    if not text:
        raise ValueError(f"crontab {field}: empty value")
    parts = []
    for part in text.split(","):
        match = _PART.match(part.strip())
        if match is None:
            raise ValueError(
                f"crontab {field}: cannot read {part!r} (use forms such as "
                "'*', '*/15', '5', '1-5', '1,15', 'mon-fri')"
            )
        step = int(match["step"]) if match["step"] else None
        if step == 0:
            raise ValueError(f"crontab {field}: step must be at least 1 in {part!r}")
        if match["star"]:
            out = "*"
        else:
            low = _number(field, match["lo"])
            high = _number(field, match["hi"]) if match["hi"] else None
            if high is not None and high < low:  # wraps around, as "fri-mon" or "22-2"
                last = 6 if field == "day_of_week" else _FIELDS[field][1]
                values = [*range(low, last + 1), *range(_FIELDS[field][0], high + 1)]
                values = values[:: step or 1]
                parts.append(",".join(str(v) for v in values))
                continue
            if high is None and step:
                high = _FIELDS[field][1]
            out = str(low) if high is None else f"{low}-{high}"
        if step:
            out += f"/{step}"
        parts.append(out)
    return ",".join(parts)


class crontab:  # noqa: N801 - Celery's name
    """Due at the minutes matching every field, like Celery's ``crontab``.

    Each field takes an int, a string in cron syntax (``"*"``, ``"*/15"``, ``"1-5"``,
    ``"1,15"``, ``"0-30/10"``, names such as ``"mon-fri"`` or ``"jan"``) or a collection
    of ints/strings (``{0, 30}``, ``range(9, 18)``). ``day_of_week`` counts from Sunday = 0
    (7 is Sunday too). All fields must match together, as in Celery: ``day_of_week="mon",
    day_of_month="1-7"`` is the first Monday of the month (classic cron would take either
    day field). Times are read in ``TASKQ_TIMEZONE``; see ``docs/beat.rst`` for
    daylight-saving changes.

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        minute: FieldValue = "*",
        hour: FieldValue = "*",
        day_of_week: FieldValue = "*",
        day_of_month: FieldValue = "*",
        month_of_year: FieldValue = "*",
    ) -> None:
        given = {
            "minute": minute,
            "hour": hour,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
            "day_of_week": day_of_week,
        }
        self._given = given
        fields = [_cron_field(name, value) for name, value in given.items()]
        #: The cron expression (minute hour day-of-month month day-of-week), numbers only.
        self.expression = " ".join(fields)
        try:
            expanded, _ = croniter.expand(self.expression)
            # An impossible date ("30 February") fails here rather than in beat.
            croniter(self.expression, 0, day_or=False).get_next(float)
        except CroniterBadDateError:
            raise ValueError(f"crontab {self.describe()!r} never matches a date") from None
        except CroniterError as exc:
            raise ValueError(f"crontab {self.describe()!r}: {exc}") from None
        # Hourly entries keep their rhythm through a repeated (autumn) hour; others run
        # once per wall-clock time.
        self._every_hour = expanded[1] == ["*"] or len(set(expanded[1])) == 24

    # -- due times ---------------------------------------------------------------------
    def _repeat(self, due: float, tz: tzinfo) -> bool:
        """True for the second pass of a wall-clock time that the clock went back over,
        which only hourly schedules run again."""
        return not self._every_hour and datetime.fromtimestamp(due, tz).fold == 1

    def _iter(self, start: float, tz: tzinfo, backwards: bool = False) -> Iterator[float]:
        it = croniter(self.expression, datetime.fromtimestamp(start, tz), day_or=False)
        step = it.get_prev if backwards else it.get_next
        while True:
            due: datetime = step(datetime)
            yield due.timestamp()

    def next_due(self, after: float, tz: tzinfo) -> float:
        for due in self._iter(after, tz):
            if due > after and not self._repeat(due, tz):
                return due
        raise AssertionError("unreachable")  # pragma: no cover

    def last_due(self, after: float, until: float, tz: tzinfo) -> float | None:
        first = self.next_due(after, tz)
        if first > until:
            return None
        # Jump back from ``until`` rather than walking forward through a long gap; then
        # step forward on next_due's chain so the answer is one of its due times.
        candidate = first
        for prev in self._iter(math.floor(until) + 1, tz, backwards=True):
            if prev <= until and not self._repeat(prev, tz):
                if prev - 1 > first:
                    candidate = self.next_due(prev - 1, tz)
                break
        while True:
            following = self.next_due(candidate, tz)
            if following > until:
                return candidate
            candidate = following

    # -- describing --------------------------------------------------------------------
    def describe(self) -> str:
        def text(value: FieldValue) -> str:
            if isinstance(value, int | str):
                return str(value).strip()
            return ",".join(str(v) for v in _in_order(value))

        g = self._given
        return " ".join(
            text(g[k]) for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        )

    def fingerprint(self, tz: tzinfo) -> str:
        return f"crontab {self.expression} {tz}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other.expression == self.expression

    def __hash__(self) -> int:
        return hash(("crontab", self.expression))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._given.items() if v != "*")
        return f"crontab({args})"


def to_schedule(value: Schedule | float | timedelta) -> Schedule:
    """A schedule from what ``TASKQ_BEAT_SCHEDULE`` accepts: seconds (a number), a
    ``timedelta``, a :class:`crontab` or an :class:`Interval`."""
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return Interval(value)
    if isinstance(value, Schedule):
        return value
    raise TypeError(f"a schedule is a number of seconds, a timedelta or a crontab, not {value!r}")


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\A\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhd]?)\s*\Z", re.IGNORECASE)


def parse_interval(text: str) -> Interval:
    """An :class:`Interval` from ``"30s"``, ``"5m"``, ``"1.5h"``, ``"1d"`` or ``"30"``
    (seconds); ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"bad interval {text!r}: use a number with s, m, h or d (e.g. '30s', '5m')"
        )
    return Interval(float(match[1]) * _UNITS[match[2].lower()])


def parse_cron(text: str) -> crontab:
    """A :class:`crontab` from five cron fields, ``"minute hour day-of-month month
    day-of-week"`` (``"0 12 * * *"``); ``ValueError`` otherwise."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron expression {text!r}: give five fields, "
            "minute hour day-of-month month day-of-week (e.g. '0 12 * * *')"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(minute, hour, day_of_week, day_of_month, month_of_year)
