"""Schedules: crontab with Celery's syntax and meanings, intervals, and due times across
daylight-saving changes."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from flask_taskq import crontab
from flask_taskq.schedules import Interval, get_timezone, to_schedule

BERLIN = get_timezone("Europe/Berlin")
NEW_YORK = get_timezone("America/New_York")
UTC = timezone.utc


def ts(text: str, tz=UTC) -> float:
    """``"2025-03-30 01:00"`` (or with an explicit offset) in ``tz`` as a unix time."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def dues(schedule, start: str, count: int, tz=UTC) -> list[str]:
    """The next ``count`` due times after ``start``, as local ISO times with offsets."""
    out, after = [], ts(start, tz)
    for _ in range(count):
        after = schedule.next_due(after, tz)
        out.append(datetime.fromtimestamp(after, tz).isoformat())
    return out


# -- syntax ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "expression"),
    [
        ({}, "* * * * *"),
        ({"minute": "*/15"}, "*/15 * * * *"),
        ({"minute": 0, "hour": "9-17", "day_of_week": "mon-fri"}, "0 9-17 * * 1-5"),
        ({"minute": 0, "hour": 0, "day_of_month": "1,15"}, "0 0 1,15 * *"),
        ({"minute": {30, 0, 15}, "hour": range(9, 12)}, "0,15,30 9,10,11 * * *"),
        ({"minute": [0], "day_of_week": ["sat", "sunday"]}, "0 * * * 6,0"),
        ({"day_of_week": "Monday"}, "* * * * 1"),
        ({"month_of_year": "jan-mar"}, "* * * 1-3 *"),
        ({"month_of_year": "JUNE"}, "* * * 6 *"),
        ({"minute": "5/15"}, "5-59/15 * * * *"),
        ({"minute": "0-30/10"}, "0-30/10 * * * *"),
        ({"day_of_week": "fri-mon"}, "* * * * 5,6,0,1"),  # ranges wrap around, as in Celery
        ({"hour": "22-2"}, "* 22,23,0,1,2 * * *"),
        ({"day_of_week": 7}, "* * * * 7"),
    ],
)
def test_crontab_syntax(kwargs, expression):
    assert crontab(**kwargs).expression == expression


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minute": 60}, "minute: 60 is out of range 0-59"),
        ({"hour": 24}, "hour: 24 is out of range"),
        ({"hour": "x"}, "hour: 'x' is not a number"),
        ({"day_of_month": 0}, "day_of_month: 0 is out of range 1-31"),
        ({"month_of_year": 13}, "month_of_year: 13 is out of range"),
        ({"day_of_week": "funday"}, "day_of_week: 'funday'"),
        ({"minute": "*/0"}, "step must be at least 1"),
        ({"minute": "1-2-3"}, "cannot read '1-2-3'"),
        ({"minute": "L"}, "minute: 'l' is not a number"),
        ({"minute": []}, "empty collection"),
        ({"minute": ""}, "empty value"),
        ({"day_of_month": 30, "month_of_year": 2}, "never matches a date"),
        ({"day_of_month": 31, "month_of_year": "apr,jun,sep,nov"}, "never matches a date"),
    ],
)
def test_crontab_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        crontab(**kwargs)


def test_crontab_rejects_bool_and_describes_itself():
    with pytest.raises(TypeError):
        crontab(minute=True)
    cron = crontab(minute=0, hour="*/3", day_of_week="mon-fri")
    assert cron.describe() == "0 */3 * * mon-fri"
    assert repr(cron) == "crontab(minute=0, hour='*/3', day_of_week='mon-fri')"
    assert cron == crontab(minute="0", hour="*/3", day_of_week="1-5")
    assert cron.fingerprint(BERLIN) != cron.fingerprint(NEW_YORK)


# -- Celery's documented meanings --------------------------------------------------------------
@pytest.mark.parametrize(
    ("cron", "start", "expected"),
    [
        # "Execute every minute."
        (crontab(), "2025-01-01 00:00", ["2025-01-01T00:01:00+00:00", "2025-01-01T00:02:00+00:00"]),
        # "Execute daily at midnight."
        (
            crontab(minute=0, hour=0),
            "2025-01-01 12:00",
            ["2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00"],
        ),
        # "Execute every three hours: midnight, 3am, 6am, 9am, noon, 3pm, 6pm, 9pm."
        (
            crontab(minute=0, hour="*/3"),
            "2025-01-01 01:00",
            ["2025-01-01T03:00:00+00:00", "2025-01-01T06:00:00+00:00"],
        ),
        # "Execute every even hour, and every hour divisible by three."
        (
            crontab(minute=0, hour="*/2,*/3"),
            "2025-01-01 00:00",
            [
                "2025-01-01T02:00:00+00:00",
                "2025-01-01T03:00:00+00:00",
                "2025-01-01T04:00:00+00:00",
                "2025-01-01T06:00:00+00:00",
                "2025-01-01T08:00:00+00:00",
            ],
        ),
        # "Execute every ten minutes, but only between 3-4 am, 5-6 pm, and 10-11 pm on
        # Thursdays or Fridays." (2025-01-02 is a Thursday.)
        (
            crontab(minute="*/10", hour="3,17,22", day_of_week="thu,fri"),
            "2025-01-01 00:00",
            ["2025-01-02T03:00:00+00:00", "2025-01-02T03:10:00+00:00"],
        ),
        # "Execute every minute on Sundays" (Sunday is 0; 2025-01-05 is a Sunday).
        (crontab(day_of_week="sunday"), "2025-01-01 00:00", ["2025-01-05T00:00:00+00:00"]),
        (
            crontab(minute=0, hour=0, day_of_week=0),
            "2025-01-01 00:00",
            ["2025-01-05T00:00:00+00:00", "2025-01-12T00:00:00+00:00"],
        ),
        # "Execute on the second day of every month."
        (
            crontab(0, 0, day_of_month="2"),
            "2025-01-02 00:00",
            ["2025-02-02T00:00:00+00:00", "2025-03-02T00:00:00+00:00"],
        ),
        # "Execute on every even numbered day."
        (
            crontab(0, 0, day_of_month="2-30/2"),
            "2025-02-27 00:00",
            ["2025-02-28T00:00:00+00:00", "2025-03-02T00:00:00+00:00"],
        ),
        # "Execute on the first and third weeks of the month."
        (
            crontab(0, 0, day_of_month="1-7,15-21"),
            "2025-01-07 00:00",
            ["2025-01-15T00:00:00+00:00"],
        ),
        # "Execute on the eleventh of May every year."
        (
            crontab(0, 0, day_of_month="11", month_of_year="5"),
            "2025-01-01 00:00",
            ["2025-05-11T00:00:00+00:00", "2026-05-11T00:00:00+00:00"],
        ),
        # "Execute every day on the first month of every quarter."
        (
            crontab(0, 0, month_of_year="*/3"),
            "2025-01-31 00:00",
            ["2025-04-01T00:00:00+00:00", "2025-04-02T00:00:00+00:00"],
        ),
    ],
)
def test_celery_documented_meanings(cron, start, expected):
    assert dues(cron, start, len(expected)) == expected


def test_day_of_week_and_day_of_month_must_both_match():
    """Celery requires every field to match; classic cron would fire on any Friday or any
    13th when both day fields are restricted."""
    friday_13 = crontab(minute=0, hour=0, day_of_week="fri", day_of_month=13)
    assert dues(friday_13, "2025-01-01 00:00", 3) == [
        "2025-06-13T00:00:00+00:00",
        "2026-02-13T00:00:00+00:00",
        "2026-03-13T00:00:00+00:00",
    ]
    first_monday = crontab(minute=0, hour=9, day_of_week="mon", day_of_month="1-7")
    assert dues(first_monday, "2025-01-01 00:00", 3) == [
        "2025-01-06T09:00:00+00:00",
        "2025-02-03T09:00:00+00:00",
        "2025-03-03T09:00:00+00:00",
    ]
    weekend_firsts = crontab(minute=0, hour=0, day_of_week="sat,sun", day_of_month=1)
    assert dues(weekend_firsts, "2025-01-01 00:00", 3) == [
        "2025-02-01T00:00:00+00:00",
        "2025-03-01T00:00:00+00:00",
        "2025-06-01T00:00:00+00:00",
    ]
    # With one day field left at "*", the other alone decides.
    assert dues(crontab(0, 0, day_of_month="1,15"), "2025-01-01 00:00", 2) == [
        "2025-01-15T00:00:00+00:00",
        "2025-02-01T00:00:00+00:00",
    ]
    assert dues(crontab(0, 12, day_of_week="mon-fri"), "2025-01-03 12:00", 2) == [
        "2025-01-06T12:00:00+00:00",
        "2025-01-07T12:00:00+00:00",
    ]  # skips the weekend
    # Sunday is both 0 and 7.
    assert dues(crontab(0, 0, day_of_week=7), "2025-01-01 00:00", 1) == dues(
        crontab(0, 0, day_of_week=0), "2025-01-01 00:00", 1
    )


# -- daylight-saving changes -------------------------------------------------------------------
# Europe/Berlin: 2025-03-30 02:00 CET -> 03:00 CEST; 2025-10-26 03:00 CEST -> 02:00 CET.
# America/New_York: 2025-03-09 02:00 EST -> 03:00 EDT; 2025-11-02 02:00 EDT -> 01:00 EST.
@pytest.mark.parametrize(
    ("tz", "cron", "start", "expected"),
    [
        # Spring: a time in the skipped hour runs right after the jump, once.
        (
            BERLIN,
            crontab(30, 2),
            "2025-03-29 12:00",
            ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"],
        ),
        (
            NEW_YORK,
            crontab(30, 2),
            "2025-03-08 12:00",
            ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        ),
        # Spring: hourly entries go on every real hour.
        (
            BERLIN,
            crontab(minute=0),
            "2025-03-30 00:30",
            ["2025-03-30T01:00:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T04:00:00+02:00"],
        ),
        (
            BERLIN,
            crontab(minute="*/30"),
            "2025-03-30 01:00",
            ["2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00"],
        ),
        (
            NEW_YORK,
            crontab(minute=0),
            "2025-03-09 00:30",
            ["2025-03-09T01:00:00-05:00", "2025-03-09T03:00:00-04:00"],
        ),
        # Spring, a weekly entry on the changing Sunday.
        (
            BERLIN,
            crontab(30, 2, day_of_week="sun"),
            "2025-03-24 00:00",
            ["2025-03-30T03:00:00+02:00", "2025-04-06T02:30:00+02:00"],
        ),
        # Autumn: a time in the repeated hour runs once, at its first pass.
        (
            BERLIN,
            crontab(30, 2),
            "2025-10-25 12:00",
            ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"],
        ),
        (
            NEW_YORK,
            crontab(30, 1),
            "2025-11-01 12:00",
            ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        ),
        (
            BERLIN,
            crontab(minute=30, hour="1-3"),
            "2025-10-26 00:00",
            ["2025-10-26T01:30:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-26T03:30:00+01:00"],
        ),
        # Autumn: hourly entries run in both passes, one real hour apart.
        (
            BERLIN,
            crontab(minute=0),
            "2025-10-26 01:30",
            ["2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00", "2025-10-26T03:00:00+01:00"],
        ),
        (
            BERLIN,
            crontab(minute="*/30", hour="*"),
            "2025-10-26 02:40+02:00",
            ["2025-10-26T02:00:00+01:00", "2025-10-26T02:30:00+01:00", "2025-10-26T03:00:00+01:00"],
        ),
        (
            NEW_YORK,
            crontab(minute=0),
            "2025-11-02 00:30",
            ["2025-11-02T01:00:00-04:00", "2025-11-02T01:00:00-05:00", "2025-11-02T02:00:00-05:00"],
        ),
    ],
)
def test_next_due_across_daylight_saving_changes(tz, cron, start, expected):
    assert dues(cron, start, len(expected), tz) == expected


def test_hourly_entries_keep_real_hours_across_changes():
    hourly = crontab(minute=0)
    for tz, start in (
        (BERLIN, "2025-03-29 20:00"),
        (BERLIN, "2025-10-25 20:00"),
        (NEW_YORK, "2025-03-08 20:00"),
        (NEW_YORK, "2025-11-01 20:00"),
    ):
        after = ts(start, tz)
        for _ in range(12):
            following = hourly.next_due(after, tz)
            assert following - after == 3600
            after = following


def test_start_inside_the_repeated_hour():
    """From the second pass of 02:40 (Berlin), a daily 02:30 is next due the day after and
    an hourly entry at 03:00 CET."""
    second_pass = datetime(2025, 10, 26, 2, 40, tzinfo=BERLIN, fold=1).timestamp()
    assert (
        datetime.fromtimestamp(crontab(30, 2).next_due(second_pass, BERLIN), BERLIN).isoformat()
        == "2025-10-27T02:30:00+01:00"
    )
    assert (
        datetime.fromtimestamp(crontab(0).next_due(second_pass, BERLIN), BERLIN).isoformat()
        == "2025-10-26T03:00:00+01:00"
    )


def test_last_due_across_daylight_saving_changes():
    daily = crontab(30, 2)

    def last(cron, after, until, tz=BERLIN):
        due = cron.last_due(ts(after, tz), ts(until, tz), tz)
        return None if due is None else datetime.fromtimestamp(due, tz).isoformat()

    assert last(daily, "2025-03-28 02:30", "2025-03-31 12:00") == "2025-03-31T02:30:00+02:00"
    assert last(daily, "2025-03-29 02:30", "2025-03-30 12:00") == "2025-03-30T03:00:00+02:00"
    assert last(daily, "2025-10-25 02:30", "2025-10-26 04:00") == "2025-10-26T02:30:00+02:00"
    assert (
        last(crontab(0), "2025-10-26 01:00", "2025-10-26 02:30+01:00")
        == "2025-10-26T02:00:00+01:00"
    )
    assert last(daily, "2025-10-26 02:30+02:00", "2025-10-26 23:00") is None
    assert last(crontab(0, 0), "2025-01-01 00:00", "2025-01-01 23:59", UTC) is None


def test_last_due_after_a_long_gap_is_quick_and_exact():
    minutely = crontab()
    started = time.perf_counter()
    due = minutely.last_due(ts("2024-01-01 00:00"), ts("2025-01-01 00:00:30"), UTC)
    assert time.perf_counter() - started < 1.0
    assert due == ts("2025-01-01 00:00")


# -- intervals -------------------------------------------------------------------------------
def test_intervals():
    assert to_schedule(30) == Interval(30.0)
    assert to_schedule(timedelta(minutes=5)) == Interval(300)
    assert to_schedule(crontab(minute=1)) == crontab(minute=1)
    every = Interval(timedelta(seconds=1.5))
    assert every.describe() == "every 1.5s"
    assert every.next_due(100.0, UTC) == 101.5
    assert every.last_due(100.0, 101.4, UTC) is None
    assert every.last_due(100.0, 101.5, UTC) == 101.5
    assert every.last_due(100.0, 110.0, UTC) == 109.0
    tenth = Interval(0.1)
    assert tenth.last_due(0.0, 0.3, UTC) == 0.3


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), timedelta(0)])
def test_interval_must_be_positive(bad):
    with pytest.raises(ValueError):
        Interval(bad)


@pytest.mark.parametrize("bad", ["30", None, True, [30]])
def test_to_schedule_rejects_other_types(bad):
    with pytest.raises(TypeError):
        to_schedule(bad)


def test_timezone_names():
    assert str(get_timezone("Europe/Berlin")) == "Europe/Berlin"
    assert get_timezone(UTC) is UTC
    with pytest.raises(ValueError, match="not a known IANA time zone"):
        get_timezone("Mars/Olympus_Mons")
