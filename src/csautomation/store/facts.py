"""Fresh account facts, derived once per account, day and signal history.

The pipeline derives an account's facts to evaluate the rules, and the playbook that a
firing starts reads the same account's facts moments later (its goal check, its templates).
One `FactsReader` shared by both in a process derives them once. It also keeps each
account's signal history, reading only the rows added since: signals are append-only.

Freshness is checked on every read with one indexed query, the account's signal count and
newest row id. A cached history is extended when rows were added after the newest one it
holds, and read again in full when the count shows anything else (a row committed out of id
order, as PostgreSQL sequences allow), so a reader never misses a signal.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from csautomation.facts.derive import derive
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.rules.ir import DerivedFact
from csautomation.store.repo import Store, _aware
from csautomation.store.tables import SignalRow

Version = tuple[int, int]  # (signal count, newest row id)


@dataclass(frozen=True)
class _History:
    version: Version
    signals: tuple[Signal, ...]  # oldest first; ties in row id order


@dataclass(frozen=True)
class _Record:
    key: tuple[date, Version, Account]
    derived: frozenset[str]
    record: dict[str, Any]


class FactsReader:
    """Thread-safe; holds at most `max_accounts` accounts, least recently read dropped."""

    def __init__(self, store: Store, model: HealthModel, max_accounts: int = 10_000) -> None:
        self.store = store
        self.model = model
        self.max_accounts = max_accounts
        self._lock = threading.Lock()
        self._histories: OrderedDict[str, _History] = OrderedDict()
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def history(self, account_id: str) -> tuple[list[Signal], Version]:
        """The account's signals, oldest first, and the version they stand for."""
        version = self.store.signals_version(account_id)
        with self._lock:
            cached = self._histories.get(account_id)
        if cached is not None and cached.version == version:
            self._touch(self._histories, account_id)
            return list(cached.signals), version
        signals: list[Signal] | None = None
        if cached is not None and version[0] > cached.version[0]:
            added = _rows(self.store, account_id, after=cached.version[1])
            if added:
                newest = max(r.row_id for r in added)
                # complete when the store holds exactly our rows up to the newest one
                if self.store.signals_version(account_id, up_to=newest)[0] == (
                    cached.version[0] + len(added)
                ):
                    # stable: cached rows keep their place before added rows of a moment
                    signals = sorted((*cached.signals, *(r.signal for r in added)), key=_when)
                    version = (cached.version[0] + len(added), newest)
        if signals is None:
            rows = _rows(self.store, account_id)
            signals = [r.signal for r in rows]
            # the version of what was read: rows may have landed since the count above
            version = (len(rows), max((r.row_id for r in rows), default=0))
        entry = _History(version, tuple(signals))
        self._put(self._histories, account_id, entry)
        return list(entry.signals), version

    def record(
        self, account: Account, as_of: date, derived: Sequence[DerivedFact] = ()
    ) -> dict[str, Any]:
        """The account's fact record for the day, with the rules' `derived` facts when
        asked for; a record cached with more derived facts serves a request for fewer."""
        signals, version = self.history(account.id)
        key = (as_of, version, account)
        wanted = frozenset(d.key for d in derived)
        with self._lock:
            hit = self._records.get(account.id)
        if hit is not None and hit.key == key and wanted <= hit.derived:
            self._touch(self._records, account.id)
            return dict(hit.record)
        record = derive(account, signals, as_of, self.model, tuple(derived)).record()
        self._put(self._records, account.id, _Record(key, wanted, record))
        return dict(record)

    def _touch(self, cache: OrderedDict[str, Any], account_id: str) -> None:
        with self._lock:
            if account_id in cache:
                cache.move_to_end(account_id)

    def _put(self, cache: OrderedDict[str, Any], account_id: str, value: Any) -> None:
        with self._lock:
            cache[account_id] = value
            cache.move_to_end(account_id)
            while len(cache) > self.max_accounts:
                cache.popitem(last=False)


@dataclass(frozen=True)
class _Row:
    row_id: int
    signal: Signal


def _when(signal: Signal) -> Any:
    return signal.occurred_at


def _rows(store: Store, account_id: str, after: int | None = None) -> list[_Row]:
    """Rows were validated when they were stored, so they are rebuilt without validating
    again (this is the hot read of evaluation)."""
    t = SignalRow.__table__.c  # type: ignore[attr-defined]
    q = select(t.id, t.type, t.occurred_at, t.payload, t.idempotency_key).where(
        t.account_id == account_id
    )
    if after is not None:
        q = q.where(t.id > after)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    out = [
        _Row(
            int(row_id),
            Signal.model_construct(
                type=SignalType(kind),
                account_id=account_id,
                occurred_at=_aware(occurred_at),
                payload=dict(payload),
                idempotency_key=key,
            ),
        )
        for row_id, kind, occurred_at, payload, key in rows
    ]
    out.sort(key=lambda r: (r.signal.occurred_at, r.row_id))
    return out
