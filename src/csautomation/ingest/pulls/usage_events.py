"""Product-analytics events to `usage_daily` signals, for every analytics pull (Amplitude,
Mixpanel): the declarative mapping of a pull's options, and the aggregation.

A pull reads export windows (an upload hour, an event day) and hands each window's events
here. Each event is given an account (a property of the event, else the user's account in
`user_accounts`) and its UTC day; its window's counts replace what that window counted
before (store/usage_tallies.py); then each touched day's `usage_daily` is recomputed from
every window that holds events of the day, under one key per account and day,
`<vendor>:<project>:<account>:<day>`. A day that gains late events gets a larger total
under the same key: the stored signal is replaced by it (and evaluated again), so the facts
never see two signals, nor a count twice, for one day. A pull's `stored` counts both the
new and the replaced. A row that is not an event is held in the quarantine with why; an
event with no account is counted as unattributed and left.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from csautomation.facts.model import Signal, SignalType
from csautomation.ingest.pulls.common import PullContext, Tally
from csautomation.store.engine import table
from csautomation.store.quarantine import Held, quarantine, replace_signal
from csautomation.store.tables import SignalRow
from csautomation.store.usage_tallies import WindowTally, day_totals, replace_windows

log = logging.getLogger(__name__)
UsageField = Literal["logins", "active_users", "feature_events"]  # facts.model.UsageDaily
ANY = "*"
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # facts.model.Account.id


class Count(BaseModel):
    """One `usage_daily` field: which events count, and in which unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[str] = Field(min_length=1)  # vendor event names; "*" is every event
    unit: Literal["events", "users"] = "events"  # each event, or each user once a day


class UsageMapping(BaseModel):
    """Vendor events -> `usage_daily` payload fields, and how an event names its account.

    `account_property` is a dotted path into the vendor's event as exported (Amplitude:
    `groups.company`, `user_properties.account_id`; Mixpanel: `properties.account_id`); a
    list there gives its first item. `user_accounts` maps a user id to an account id for
    events without the property. `active_users` defaults to the distinct users of every
    mapped event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[UsageField, Count]
    account_property: str | None = Field(default=None, pattern=r"^[^.\s]+(\.[^.\s]+)*$")
    user_accounts: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> UsageMapping:
        if "logins" not in self.fields:
            raise ValueError("fields: 'logins' needs its events (e.g. logins: {events: [Login]})")
        if not self.account_property and not self.user_accounts:
            raise ValueError("give account_property, user_accounts, or both")
        bad = sorted(a for a in self.user_accounts.values() if not ACCOUNT_ID.match(a))
        if bad:
            raise ValueError(f"user_accounts: {bad[0]!r} is not an account id")
        if "active_users" not in self.fields:
            names = sorted({e for c in self.fields.values() for e in c.events})
            every = [ANY] if ANY in names else names
            fields = dict(self.fields) | {"active_users": Count(events=every, unit="users")}
            object.__setattr__(self, "fields", fields)
        return self

    def event_names(self) -> list[str] | None:
        """The event names to ask the vendor for; None when every event counts."""
        names = {e for c in self.fields.values() for e in c.events}
        return None if ANY in names else sorted(names)


@dataclass(frozen=True)
class UsageEvent:
    name: str
    at: datetime  # aware
    user: str | None
    data: Mapping[str, Any]  # the event as exported, for the account property
    dedupe: str | None = None  # the vendor's id of the event: a repeat is counted once


@dataclass(frozen=True)
class BadRow:
    field: str
    message: str


@dataclass
class WindowBatch:
    """What one run read: windows, their events, and the rows that are not events."""

    windows: set[str] = field(default_factory=set)
    tallies: dict[tuple[str, date, str], WindowTally] = field(default_factory=dict)
    held: list[Held] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    unattributed: int = 0
    events: int = 0


class Aggregator:
    """Counts events into window tallies, then writes tallies, signals and held rows."""

    def __init__(self, mapping: UsageMapping, vendor: str, project: str, kind: str) -> None:
        self.mapping = mapping
        self.vendor = vendor
        self.project = project
        self.source = f"{vendor}:{project}"
        self.held_source = f"pull:{kind}"
        self.batch = WindowBatch()

    def start(self) -> None:
        """Forget what was counted since the last commit (a read begun again)."""
        self.batch = WindowBatch()

    def window(self, name: str) -> None:
        """A window read, events or not: its earlier counts are replaced."""
        self.batch.windows.add(name)

    def bad(self, window: str, raw: str, problem: BadRow) -> None:
        self.batch.windows.add(window)
        errors = [{"field": problem.field, "message": problem.message}]
        self.batch.held.append(Held(source=self.held_source, raw=raw, errors=errors))

    def add(self, window: str, event: UsageEvent, raw: str) -> None:
        b = self.batch
        b.windows.add(window)
        b.events += 1
        if event.dedupe is not None:
            if (window, event.dedupe) in b.seen:
                return
            b.seen.add((window, event.dedupe))
        account = self._account(event)
        if isinstance(account, BadRow):
            self.bad(window, raw, account)
            return
        if account is None:
            b.unattributed += 1
            return
        day = event.at.astimezone(UTC).date()
        tally = b.tallies.get((account, day, window))
        if tally is None:
            tally = b.tallies[(account, day, window)] = WindowTally(account, day, window)
        user = _user_hash(event.user) if event.user else None
        for name, count in self.mapping.fields.items():
            if ANY not in count.events and event.name not in count.events:
                continue
            if count.unit == "events":
                tally.counts[name] = tally.counts.get(name, 0) + 1
            elif user is not None:
                tally.users.setdefault(name, set()).add(user)

    def _account(self, event: UsageEvent) -> str | BadRow | None:
        path = self.mapping.account_property
        value = _at_path(event.data, path) if path else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is None or value == "":
            return self.mapping.user_accounts.get(event.user) if event.user else None
        if isinstance(value, bool) or not isinstance(value, str | int):
            return BadRow(str(path), f"the account is {type(value).__name__}, not an id")
        text = str(value)
        if not ACCOUNT_ID.match(text):
            return BadRow(str(path), f"{text[:60]!r} is not an account id")
        return text

    def commit(self, ctx: PullContext, tally: Tally) -> None:
        """The batch's held rows, tallies, then signals (a crash in between: the next run
        reads the windows again and ends the same); the cursor is the caller's, after."""
        b = self.batch
        if b.held:
            quarantine(ctx.store, b.held)
            log.warning("%s: %d rows held in the quarantine", self.held_source, len(b.held))
        engine = ctx.store.engine
        touched = replace_windows(engine, self.source, b.windows, b.tallies.values())
        totals = day_totals(engine, self.source, touched)
        signals = [self._signal(a, d, t.counts, t.users) for (a, d), t in totals.items()]
        fresh, replaced = store_usage(ctx, signals)
        tally.stored += fresh + replaced
        if replaced:
            log.info("%s: %d days grew and were replaced", self.held_source, replaced)
        if b.unattributed:
            log.info("%s: %d events named no account", self.held_source, b.unattributed)
        self.batch = WindowBatch()

    def _signal(
        self, account: str, day: date, counts: Mapping[str, int], users: Mapping[str, int]
    ) -> Signal:
        payload = {"logins": 0, "active_users": 0, "feature_events": 0}
        for name, count in self.mapping.fields.items():
            payload[name] = (counts if count.unit == "events" else users).get(name, 0)
        return Signal(
            type=SignalType.usage_daily,
            account_id=account,
            occurred_at=datetime.combine(day, time(0), tzinfo=UTC),
            payload=payload,
            idempotency_key=f"{self.source}:{account}:{day.isoformat()}",
        )


def store_usage(ctx: PullContext, signals: Iterable[Signal]) -> tuple[int, int]:
    """New keys stored; a key stored with another payload replaced by the new total (and
    evaluated again). Returns (stored, replaced)."""
    wanted = {s.idempotency_key: s for s in signals}
    stored = _stored_payloads(ctx, wanted.keys())
    fresh = [s for k, s in wanted.items() if k not in stored]
    changed = [s for k, s in wanted.items() if k in stored and stored[k] != s.payload]
    replaced = sum(replace_signal(ctx.store, s.idempotency_key, s) for s in changed)
    return len(ctx.store.store_signals(fresh)), replaced


def _stored_payloads(ctx: PullContext, keys: Collection[str]) -> dict[str, Any]:
    t = table(SignalRow)
    ordered = sorted(keys)
    out: dict[str, Any] = {}
    with ctx.store.engine.connect() as conn:
        for start in range(0, len(ordered), 500):
            q = select(t.c.idempotency_key, t.c.payload).where(
                t.c.idempotency_key.in_(ordered[start : start + 500])
            )
            out.update((k, p) for k, p in conn.execute(q))
    return out


def _at_path(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _user_hash(user: str) -> str:
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:16]
