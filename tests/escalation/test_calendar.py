"""Working time: nights, weekends and holidays do not count; local hours follow the clocks
when summer time starts or ends; and the arithmetic holds for any calendar (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from csautomation.escalation.calendar import (
    DAYS,
    Calendar,
    add_working_time,
    is_open,
    next_opening,
    working_time_between,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)


def office(timezone: str, hours: str = "09:00-17:30", holidays: tuple[str, ...] = ()) -> Calendar:
    weekdays = dict.fromkeys(DAYS[:5], [hours])
    return Calendar.model_validate(
        {"timezone": timezone, "hours": weekdays, "holidays": list(holidays)}
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


UK = office("Europe/London", holidays=("2026-12-25", "2026-12-28", "2027-01-01"))


# -- wall clock -------------------------------------------------------------------------
def test_no_calendar_is_wall_clock_in_utc() -> None:
    start = datetime(2026, 3, 28, 23, 0, tzinfo=LONDON)
    assert add_working_time(start, 4 * H, None) == utc(2026, 3, 29, 3, 0)
    assert add_working_time(start, 4 * H, None).tzinfo is UTC
    assert is_open(start, None)
    # adding to a London time is wall-clock arithmetic: 23:00 + 4h is 03:00 BST, 3 real hours
    assert working_time_between(start, start + 4 * H, None) == 3 * H
    assert working_time_between(start, utc(2026, 3, 29, 3, 0), None) == 4 * H


def test_naive_datetimes_and_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_time(datetime(2026, 1, 5, 9), H, UK)
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(datetime(2026, 1, 5, 9), UK)
    with pytest.raises(ValueError, match="negative"):
        add_working_time(utc(2026, 1, 5, 9), -H, UK)


# -- business hours ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        # within the day
        (utc(2026, 1, 6, 10, 0), 2 * H, utc(2026, 1, 6, 12, 0)),
        # across the night: 1h30 on Tuesday, 2h30 on Wednesday
        (utc(2026, 1, 6, 16, 0), 4 * H, utc(2026, 1, 7, 11, 30)),
        # before opening: counting begins at 09:00
        (utc(2026, 1, 6, 6, 15), 1 * H, utc(2026, 1, 6, 10, 0)),
        # on a Saturday: counting begins on Monday
        (utc(2026, 1, 10, 12, 0), 1 * H, utc(2026, 1, 12, 10, 0)),
        # Friday afternoon to Monday morning
        (utc(2026, 1, 9, 16, 0), 4 * H, utc(2026, 1, 12, 11, 30)),
        # ending exactly at closing time is closing time, not the next opening
        (utc(2026, 1, 6, 15, 30), 2 * H, utc(2026, 1, 6, 17, 30)),
        # a whole working day is 8h30
        (utc(2026, 1, 6, 9, 0), timedelta(hours=8, minutes=30), utc(2026, 1, 6, 17, 30)),
        (utc(2026, 1, 6, 9, 0), timedelta(hours=17), utc(2026, 1, 7, 17, 30)),
        # zero is the start itself, even when closed
        (utc(2026, 1, 10, 12, 0), timedelta(0), utc(2026, 1, 10, 12, 0)),
    ],
)
def test_business_hours(start: datetime, duration: timedelta, expected: datetime) -> None:
    assert add_working_time(start, duration, UK) == expected
    assert working_time_between(start, expected, UK) == duration


def test_holidays_and_the_weekend_are_skipped() -> None:
    # Thursday 24 Dec 16:00: 1h30 that day; Christmas (Fri), the weekend and the Boxing
    # Day holiday (Mon 28) do not count; 2h30 on Tuesday 29
    assert add_working_time(utc(2026, 12, 24, 16, 0), 4 * H, UK) == utc(2026, 12, 29, 11, 30)
    # the same without the holidays: Friday 25 counts
    plain = office("Europe/London")
    assert add_working_time(utc(2026, 12, 24, 16, 0), 4 * H, plain) == utc(2026, 12, 25, 11, 30)
    # New Year's Day: Thursday 31 Dec 17:00 + 1h -> Monday 4 Jan 09:30
    assert add_working_time(utc(2026, 12, 31, 17, 0), H, UK) == utc(2027, 1, 4, 9, 30)
    assert not is_open(utc(2026, 12, 25, 12, 0), UK)
    assert is_open(utc(2026, 12, 25, 12, 0), plain)


def test_holidays_are_local_dates() -> None:
    # 1 Jan in Auckland starts at 11:00 UTC on 31 Dec
    nz = Calendar.always("Pacific/Auckland").model_copy(update={"holidays": [date(2027, 1, 1)]})
    assert is_open(utc(2026, 12, 31, 10, 59), nz)
    assert not is_open(utc(2026, 12, 31, 11, 0), nz)
    assert not is_open(utc(2027, 1, 1, 10, 59), nz)
    assert is_open(utc(2027, 1, 1, 11, 0), nz)


# -- summer time ------------------------------------------------------------------------
def test_hours_follow_the_clocks_when_summer_time_starts() -> None:
    # New York moves to EDT on Sunday 8 March 2026: 09:00 local is 14:00 UTC on Friday
    # and 13:00 UTC on Monday
    ny = office("America/New_York", hours="09:00-17:00")
    friday_4pm = datetime(2026, 3, 6, 16, 0, tzinfo=NEW_YORK)
    due = add_working_time(friday_4pm, 2 * H, ny)
    assert due == utc(2026, 3, 9, 14, 0)
    assert due.astimezone(NEW_YORK).hour == 10
    assert next_opening(utc(2026, 3, 7, 12, 0), ny) == utc(2026, 3, 9, 13, 0)


def test_hours_follow_the_clocks_when_summer_time_ends() -> None:
    # London back to GMT on Sunday 25 October 2026, seven days a week 08:00-20:00
    daily = Calendar.model_validate(
        {"timezone": "Europe/London", "hours": dict.fromkeys(DAYS, ["08:00-20:00"])}
    )
    saturday_7pm = datetime(2026, 10, 24, 19, 0, tzinfo=LONDON)  # 18:00 UTC
    due = add_working_time(saturday_7pm, 2 * H, daily)
    assert due == utc(2026, 10, 25, 9, 0)  # 09:00 GMT
    assert due.astimezone(LONDON).hour == 9


def test_a_local_day_around_the_clock_counts_real_hours() -> None:
    # the spring day has 23 hours and the autumn day 25: a 24h deadline is 24 real hours
    always = Calendar.always("Europe/London")
    for start in (utc(2026, 3, 28, 12, 0), utc(2026, 10, 24, 12, 0)):
        assert add_working_time(start, 24 * H, always) == start + 24 * H
    # local midnight to midnight on 29 March is 23 hours of working time
    assert working_time_between(
        datetime(2026, 3, 29, 0, 0, tzinfo=LONDON),
        datetime(2026, 3, 30, 0, 0, tzinfo=LONDON),
        always,
    ) == timedelta(hours=23)


def test_hours_inside_the_spring_gap_are_not_counted_twice() -> None:
    # 01:00-02:00 does not exist in London on 29 March 2026
    odd = Calendar.model_validate(
        {"timezone": "Europe/London", "hours": {"sun": ["00:00-01:50", "02:10-03:00"]}}
    )
    day = (datetime(2026, 3, 29, 0, 0, tzinfo=LONDON), datetime(2026, 3, 30, 0, 0, tzinfo=LONDON))
    # 01:50 resolves to 01:50 UTC (02:50 BST) and 02:10 BST is 01:10 UTC: the spans meet,
    # and 00:00 GMT to 03:00 BST is two real hours
    assert working_time_between(*day, odd) == timedelta(hours=2)


# -- is_open ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2026, 1, 6, 8, 59), False),
        (utc(2026, 1, 6, 9, 0), True),
        (utc(2026, 1, 6, 17, 29), True),
        (utc(2026, 1, 6, 17, 30), False),
        (utc(2026, 1, 10, 12, 0), False),  # Saturday
        (utc(2026, 7, 7, 8, 30), True),  # 09:30 BST
        (utc(2026, 7, 7, 16, 45), False),  # 17:45 BST
    ],
)
def test_is_open(moment: datetime, expected: bool) -> None:
    assert is_open(moment, UK) is expected


def test_split_days_and_midnight() -> None:
    lunch = Calendar.model_validate(
        {
            "timezone": "UTC",
            "hours": {
                "mon": ["13:00-17:00", "09:00-12:00"],
                "tue": ["22:00-24:00"],
                "wed": ["00:00-02:00"],
            },
        }
    )
    assert str(lunch.hours.mon[0]) == "09:00-12:00"  # kept in order
    assert add_working_time(utc(2026, 1, 5, 11, 0), 2 * H, lunch) == utc(2026, 1, 5, 14, 0)
    # Tuesday 22:00 to Wednesday 02:00 is one stretch
    assert add_working_time(utc(2026, 1, 6, 23, 0), 2 * H, lunch) == utc(2026, 1, 7, 1, 0)
    assert is_open(utc(2026, 1, 7, 0, 0), lunch)
    dumped = lunch.model_dump(mode="json")
    assert dumped["hours"]["mon"] == ["09:00-12:00", "13:00-17:00"]
    assert Calendar.model_validate(dumped) == lunch


# -- validation -------------------------------------------------------------------------
def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Calendar.model_validate(data)
    return str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"timezone": "Europe/Londn", "hours": {"mon": ["09:00-17:00"]}},
            "did you mean 'Europe/London'",
        ),
        ({"timezone": "Mars/Olympus", "hours": {"mon": ["09:00-17:00"]}}, "unknown time zone"),
        ({"timezone": "UTC", "hours": {"mon": ["9-5"]}}, "such as 09:00-17:30"),
        ({"timezone": "UTC", "hours": {"mon": ["17:30-09:00"]}}, "cannot cross midnight"),
        ({"timezone": "UTC", "hours": {"mon": ["09:00-25:00"]}}, "not a time of day"),
        ({"timezone": "UTC", "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
        ({"timezone": "UTC", "hours": {"sat": None}}, "at least one day"),
        ({"timezone": "UTC", "hours": {"monday": ["09:00-17:00"]}}, "monday"),
        ({"timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}, "holidays": ["soon"]}, "date"),
    ],
)
def test_invalid_calendars(data: dict[str, Any], message: str) -> None:
    assert message in _error(data)


def test_a_calendar_that_never_opens_is_an_error_not_a_hang() -> None:
    days = [date(2026, 1, 5) + timedelta(weeks=i) for i in range(500)]
    mondays = Calendar.model_validate(
        {"timezone": "UTC", "hours": {"mon": ["09:00-10:00"]}, "holidays": days}
    )
    assert add_working_time(utc(2026, 1, 1), H, mondays) == utc(2035, 8, 6, 10, 0)
    closed_for_good = mondays.model_copy(
        update={"holidays": [date(2026, 1, 5) + timedelta(weeks=i) for i in range(800)]}
    )
    with pytest.raises(ValueError, match="never opens"):
        add_working_time(utc(2026, 1, 1), H, closed_for_good)


# -- properties -------------------------------------------------------------------------
ZONES = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # a 30-minute summer time shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Sao_Paulo",
]


def _hhmm(quarter: int) -> str:
    return f"{quarter * 15 // 60:02d}:{quarter * 15 % 60:02d}"


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    hours: dict[str, list[str]] = {}
    for day in DAYS:
        cuts = sorted(draw(st.sets(st.integers(0, 96), max_size=6)))
        hours[day] = [f"{_hhmm(a)}-{_hhmm(b)}" for a, b in zip(cuts[::2], cuts[1::2], strict=False)]
    if not any(hours.values()):
        hours["wed"] = ["10:00-11:15"]
    holidays = draw(st.lists(st.dates(date(2025, 12, 1), date(2027, 3, 1)), max_size=12))
    return Calendar.model_validate(
        {"timezone": draw(st.sampled_from(ZONES)), "hours": hours, "holidays": holidays}
    )


starts = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3))
EXAMPLES = settings(max_examples=300, deadline=None)


@EXAMPLES
@given(calendars(), starts, durations)
def test_working_time_to_the_result_is_the_duration(
    calendar: Calendar, start: datetime, duration: timedelta
) -> None:
    end = add_working_time(start, duration, calendar)
    assert end.tzinfo is UTC
    assert end >= start + duration  # working time never runs faster than the clock
    assert working_time_between(start, end, calendar) == duration
    if duration:
        assert is_open(end - timedelta(microseconds=1), calendar)


@EXAMPLES
@given(st.sampled_from(ZONES), starts, durations)
def test_around_the_clock_is_wall_clock(zone: str, start: datetime, duration: timedelta) -> None:
    assert add_working_time(start, duration, Calendar.always(zone)) == start + duration


@EXAMPLES
@given(calendars(), starts, durations, durations)
def test_monotonic_and_additive(
    calendar: Calendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    short, long = sorted((a, b))
    assert add_working_time(start, short, calendar) <= add_working_time(start, long, calendar)
    step = add_working_time(add_working_time(start, a, calendar), b, calendar)
    assert step == add_working_time(start, a + b, calendar)


@EXAMPLES
@given(calendars(), starts)
def test_next_opening_is_open(calendar: Calendar, moment: datetime) -> None:
    opening = next_opening(moment, calendar)
    assert opening >= moment
    assert is_open(opening, calendar)
    assert working_time_between(moment, opening, calendar) == timedelta(0)
