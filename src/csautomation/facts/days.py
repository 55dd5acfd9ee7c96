"""One meaning for time in facts and rules (rules/README.md, "Time: days, windows and the
evaluation instant"), in one place so that every path reads it alike.

Days are calendar days in UTC: a signal's day is the UTC date of its `occurred_at`, and "N
days ago" is the evaluation day minus the signal's day (0 today, 1 yesterday). A window of N
days holds the days 0 to N-1 ago. An evaluation at an instant T reads the UTC day of T and
the signals that occurred at or before T; an evaluation as of a day (`--as-of`, the sweeps,
the backtest) is one at `end_of_day(day)`, with every signal of that day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, TypeVar

AsOf = date | datetime  # a day (read at its end) or an instant
_ZERO = timedelta(0)


class _Timed(Protocol):
    @property
    def occurred_at(self) -> datetime: ...


_T = TypeVar("_T", bound=_Timed)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of `moment` (a naive one is taken as UTC, as the store does)."""
    if moment.tzinfo is UTC:  # signals are kept in UTC: the common case, kept cheap
        return moment.date()
    offset = moment.utcoffset()
    if offset is None or offset == _ZERO:
        return moment.date()
    return moment.astimezone(UTC).date()


def end_of_day(day: date) -> datetime:
    """The last instant of the UTC day: an evaluation there reads all of the day's signals."""
    return datetime.combine(day, time.max, tzinfo=UTC)


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def evaluation_day(as_of: AsOf) -> date:
    """The day an evaluation reads: the UTC day of an instant, or the day itself."""
    return utc_day(as_of) if isinstance(as_of, datetime) else as_of


def instant(as_of: AsOf) -> datetime:
    """The instant an evaluation reads at: an instant itself, or the end of a day."""
    return as_of if isinstance(as_of, datetime) else end_of_day(as_of)


def counted(signals: Iterable[_T], as_of: AsOf) -> list[_T]:
    """The signals an evaluation at `as_of` reads: those that occurred at or before it."""
    at = instant(as_of)
    return [s for s in signals if s.occurred_at <= at]
