"""What the product-analytics pulls have counted, per export window: one row per (source,
day, account, window), its counts and the hashed ids of the users it saw.

A day's `usage_daily` signal is recomputed from every window holding events of that day
(counts added, users united), so a window read again replaces its own rows and never adds
to them: a re-read cannot double count, and an event uploaded days late (a later window)
raises its day's total. User ids are kept only as short hashes: enough to count distinct
users, nothing to read back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, delete, insert, select, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from csautomation.store.engine import table

__all__ = ["DayTotal", "UsageTallyRow", "WindowTally", "day_totals", "replace_windows"]


class UsageTallyRow(SQLModel, table=True):
    __tablename__ = "usage_tallies"
    __table_args__ = (Index("ix_usage_tallies_window", "source", "window"),)
    source: str = Field(primary_key=True, max_length=300)  # e.g. amplitude:187520
    day: date = Field(primary_key=True)  # the events' UTC day
    account_id: str = Field(primary_key=True, max_length=128)
    window: str = Field(primary_key=True, max_length=64)  # the export window read
    counts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # field -> events
    users: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # field -> [hash]
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass
class WindowTally:
    """One account's events of one day, in one window."""

    account_id: str
    day: date
    window: str
    counts: dict[str, int] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DayTotal:
    counts: dict[str, int]  # events, added over the windows
    users: dict[str, int]  # distinct users, over the windows


def replace_windows(
    engine: Engine, source: str, windows: Collection[str], tallies: Iterable[WindowTally]
) -> set[tuple[str, date]]:
    """The windows' rows replaced by `tallies` in one transaction. Returns every (account,
    day) whose total may have changed: those in `tallies` and those the windows held."""
    t = table(UsageTallyRow)
    now = datetime.now(UTC)
    tallies = list(tallies)
    rows = [
        {
            "source": source,
            "day": x.day,
            "account_id": x.account_id,
            "window": x.window,
            "counts": dict(sorted(x.counts.items())),
            "users": {f: sorted(u) for f, u in sorted(x.users.items())},
            "updated_at": now,
        }
        for x in tallies
    ]
    touched: set[tuple[str, date]] = {(x.account_id, x.day) for x in tallies}
    names = sorted(windows)
    with engine.begin() as conn:
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            where = (t.c.source == source, t.c.window.in_(chunk))
            old = conn.execute(select(t.c.account_id, t.c.day).where(*where)).all()
            touched.update((str(a), d) for a, d in old)
            conn.execute(delete(t).where(*where))
        for start in range(0, len(rows), 1000):
            conn.execute(insert(t), rows[start : start + 1000])
    return touched


def day_totals(
    engine: Engine, source: str, keys: Collection[tuple[str, date]]
) -> dict[tuple[str, date], DayTotal]:
    """Each (account, day)'s total over every window read; keys with no rows are left out."""
    t = table(UsageTallyRow)
    wanted: Sequence[tuple[str, date]] = sorted(keys)
    counts: dict[tuple[str, date], dict[str, int]] = {}
    users: dict[tuple[str, date], dict[str, set[str]]] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), 300):
            chunk = wanted[start : start + 300]
            q = select(t.c.account_id, t.c.day, t.c.counts, t.c.users).where(
                t.c.source == source, tuple_(t.c.account_id, t.c.day).in_(chunk)
            )
            for account, day, row_counts, row_users in conn.execute(q):
                key = (account, day)
                total = counts.setdefault(key, {})
                for name, n in row_counts.items():
                    total[name] = total.get(name, 0) + int(n)
                seen = users.setdefault(key, {})
                for name, ids in row_users.items():
                    seen.setdefault(name, set()).update(ids)
    return {
        key: DayTotal(counts[key], {name: len(ids) for name, ids in users[key].items()})
        for key in counts
    }
