"""Working-time calendars: when an escalation's clock runs.

A calendar is a time zone, opening hours per weekday in local wall-clock time, and
holidays (local dates). `add_working_time` counts only the open hours: "4h" started on a
Friday at 16:00 in a 09:00-17:30 calendar ends on Monday at 11:30. The hours are local, so
a deadline moves with the clocks when summer time starts or ends; the arithmetic is done
on UTC instants, so every counted hour is a real hour.

Every datetime in and out is timezone-aware; results are in UTC. No calendar (None) means
wall-clock time, around the clock.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from csautomation.config import describe

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_MINUTES = 24 * 60
# a calendar that opens at least once a week opens within 8 days unless holidays close
# it; more than ten years of closed days means the holidays cover everything
_MAX_CLOSED_DAYS = 3660


@dataclass(frozen=True, order=True)
class Span:
    """Opening hours within one local day, in minutes after midnight (end 1440 = 24:00)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _span(value: object) -> object:
    if isinstance(value, Span):
        return value
    m = _SPAN.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected opening hours such as 09:00-17:30, found {describe(value)}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"'{value}' is not a time of day (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(
            f"'{value}' ends before it starts; hours cannot cross midnight: write "
            f"{_hhmm(start)}-24:00 on one day and 00:00-{_hhmm(end)} on the next"
        )
    return Span(start, end)


OpenHours = Annotated[
    Span,
    BeforeValidator(_span),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}$",
            "description": "local opening hours, e.g. 09:00-17:30 (24:00 ends at midnight)",
        }
    ),
]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = difflib.get_close_matches(value, sorted(available_timezones()), n=1, cutoff=0.6)
        advice = f"did you mean '{hint[0]}'?" if hint else "use an IANA name such as Europe/London"
        raise ValueError(f"unknown time zone '{value}'; {advice}") from None
    return value


TimeZoneName = Annotated[
    str,
    AfterValidator(_zone),
    Field(description="IANA time zone name, e.g. Europe/London or America/New_York"),
]


class WeekHours(BaseModel):
    """Opening hours per weekday; a day left out (or empty) is closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mon: list[OpenHours] = Field(default_factory=list)
    tue: list[OpenHours] = Field(default_factory=list)
    wed: list[OpenHours] = Field(default_factory=list)
    thu: list[OpenHours] = Field(default_factory=list)
    fri: list[OpenHours] = Field(default_factory=list)
    sat: list[OpenHours] = Field(default_factory=list)
    sun: list[OpenHours] = Field(default_factory=list)

    @field_validator(*DAYS, mode="before")
    @classmethod
    def _closed(cls, value: object) -> object:
        return [] if value is None else value  # `sat:` with nothing after it: closed

    @field_validator(*DAYS)
    @classmethod
    def _no_overlap(cls, spans: list[Span]) -> list[Span]:
        ordered = sorted(spans)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start < a.end:
                raise ValueError(f"opening hours {a} and {b} overlap")
        return ordered

    def on(self, weekday: int) -> list[Span]:
        """The spans of a weekday, Monday = 0 as in `date.weekday()`."""
        spans: list[Span] = getattr(self, DAYS[weekday])
        return spans


class Calendar(BaseModel):
    """When the clock runs: local opening hours per weekday, minus holidays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: TimeZoneName
    hours: WeekHours
    holidays: list[date] = Field(
        default_factory=list, description="local dates on which the calendar is closed"
    )

    @model_validator(mode="after")
    def _opens(self) -> Calendar:
        if not any(self.hours.on(d) for d in range(7)):
            raise ValueError("a calendar needs opening hours on at least one day")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @staticmethod
    def always(timezone: str = "UTC") -> Calendar:
        """Open around the clock every day (for tests and comparisons)."""
        day = ["00:00-24:00"]
        return Calendar.model_validate({"timezone": timezone, "hours": dict.fromkeys(DAYS, day)})


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    # wall-clock arithmetic on purpose: 24:00 is the next day's local midnight; a local
    # time in the spring gap (fold=0) resolves to the offset before the change
    return (datetime.combine(day, time(), tzinfo=zone) + timedelta(minutes=minutes)).astimezone(UTC)


def windows(calendar: Calendar, after: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Open intervals [opens, closes) in UTC, in order, that end after `after`.

    Endless: the caller stops. Raises ValueError if the calendar stays closed for more
    than ten years (every day a holiday).
    """
    after = _utc(after, "after")
    zone = calendar.zone
    holidays = set(calendar.holidays)
    day = after.astimezone(zone).date() - timedelta(days=1)
    closed = 0
    last = datetime.min.replace(tzinfo=UTC)
    while True:
        found = False
        if day not in holidays:
            for span in calendar.hours.on(day.weekday()):
                # a span that starts inside the spring gap can begin, in UTC, before the
                # previous one ends: never count an instant twice
                opens = max(_local(day, span.start, zone), last)
                closes = _local(day, span.end, zone)
                if closes > opens:
                    found, last = True, closes
                    if closes > after:
                        yield opens, closes
        closed = 0 if found else closed + 1
        if closed > _MAX_CLOSED_DAYS:
            raise ValueError("the calendar never opens (every day is a holiday)")
        day += timedelta(days=1)


def add_working_time(start: datetime, duration: timedelta, calendar: Calendar | None) -> datetime:
    """The moment `duration` of working time after `start`, in UTC.

    With no calendar, wall-clock time: start + duration. With one, only open hours count;
    a start outside them begins counting at the next opening. A result that falls exactly
    at a closing time is that closing time, not the next opening.
    """
    begin = _utc(start, "start")
    if duration < timedelta(0):
        raise ValueError(f"duration must not be negative, got {duration}")
    if calendar is None or not duration:
        return begin + duration
    left = duration
    for opens, closes in windows(calendar, begin):
        frm = max(opens, begin)
        available = closes - frm
        if left <= available:
            return frm + left
        left -= available
    raise AssertionError("unreachable: windows() is endless")  # pragma: no cover


def working_time_between(start: datetime, end: datetime, calendar: Calendar | None) -> timedelta:
    """Working time from `start` to `end` (zero if end is not after start)."""
    a, b = _utc(start, "start"), _utc(end, "end")
    if b <= a:
        return timedelta(0)
    if calendar is None:
        return b - a
    total = timedelta(0)
    for opens, closes in windows(calendar, a):
        if opens >= b:
            break
        total += min(closes, b) - max(opens, a)
    return total


def is_open(moment: datetime, calendar: Calendar | None) -> bool:
    """True when `moment` is inside the calendar's open hours (always, with no calendar)."""
    at = _utc(moment, "moment")
    if calendar is None:
        return True
    opens, _closes = next(windows(calendar, at))
    return opens <= at  # the first window ending after `at` holds it, or none does


def next_opening(moment: datetime, calendar: Calendar | None) -> datetime:
    """`moment` if the calendar is open then, else its next opening, in UTC."""
    at = _utc(moment, "moment")
    if calendar is None:
        return at
    opens, _closes = next(windows(calendar, at))
    return max(opens, at)
