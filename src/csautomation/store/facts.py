"""Fresh account facts, derived once per account, day and signal history.

The pipeline derives an account's facts to evaluate the rules, and the playbook that a
firing starts reads the same account's facts moments later (its goal check, its templates).
One `FactsReader` shared by both in a process derives them once. It also keeps each
account's signal history, reading only the rows added since: signals are append-only.

Freshness is checked on every read with one indexed query, the account's signal count and
newest row id. A cached history is extended when rows were added after the newest one it
holds, and read again in full when the count shows anything else (a row committed out of id
order, as PostgreSQL sequences allow), so a reader never misses a signal.

Across processes: the pipeline keeps the day records of the accounts that fired in the
store, and a reader that does not hold an account's day record takes the kept one when it
was derived from the same inputs (store/facts_snapshots.py), before reading any history.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select

from csautomation.facts.days import AsOf, end_of_day, utc_day
from csautomation.facts.derive import derive
from csautomation.facts.derive_many import derive_records
from csautomation.facts.derived import DerivedFact
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.store.engine import aware
from csautomation.store.facts_snapshots import (
    Snapshot,
    inputs_digest,
    keepable,
    kept,
    model_digest,
)
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow

Version = tuple[int, int]  # (signal count, newest row id)
BATCH_FROM = 4  # accounts from which one grid derives them faster than one by one
REASON_LIMIT = 500  # characters of an exception's message shown or kept as a reason


@dataclass(frozen=True)
class _History:
    version: Version
    signals: tuple[Signal, ...]  # oldest first; ties in row id order


@dataclass(frozen=True)
class _Record:
    key: tuple[AsOf, Version, Account]
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
        self._model_key = model_digest(model)

    def history(self, account_id: str) -> tuple[list[Signal], Version]:
        """The account's signals, oldest first, and the version they stand for."""
        signals, version = self.histories([account_id])[account_id]
        return list(signals), version

    def histories(
        self, account_ids: Sequence[str], versions: dict[str, Version] | None = None
    ) -> dict[str, tuple[tuple[Signal, ...], Version]]:
        """`history` of many accounts in a few queries whatever their number: their
        versions (unless given, read just before), the rows added since the cached ones, and
        the full histories of the rest."""
        if versions is None:
            versions = self.store.signals_versions(account_ids)
        else:
            versions = {a: versions[a] for a in account_ids}
        out: dict[str, _History] = {}
        extend: dict[str, _History] = {}
        with self._lock:
            cached = {a: self._histories.get(a) for a in versions}
        for account_id, version in versions.items():
            held = cached[account_id]
            if held is not None and held.version == version:
                out[account_id] = held
            elif held is not None and version[0] > held.version[0]:
                extend[account_id] = held
        if extend:
            after = min(h.version[1] for h in extend.values())
            up_to = max(versions[a][1] for a in extend)
            added: dict[str, list[_Row]] = {a: [] for a in extend}
            for account_id, row in _rows_many(self.store, list(extend), after, up_to):
                held = extend[account_id]
                if held.version[1] < row.row_id <= versions[account_id][1]:
                    added[account_id].append(row)
            for account_id, held in extend.items():
                rows = added[account_id]
                # complete when the rows read are exactly those the version counted: a row
                # committed below the cached newest id (out of id order) makes it fall short
                if held.version[0] + len(rows) == versions[account_id][0]:
                    # stable: cached rows keep their place before added rows of a moment
                    signals = sorted((*held.signals, *(r.signal for r in rows)), key=_when)
                    out[account_id] = _History(versions[account_id], tuple(signals))
        missing = [a for a in versions if a not in out]
        if missing:
            full: dict[str, list[_Row]] = {a: [] for a in missing}
            for account_id, row in _rows_many(self.store, missing):
                full[account_id].append(row)
            for account_id, rows in full.items():
                rows.sort(key=lambda r: (r.signal.occurred_at, r.row_id))
                # the version of what was read: rows may have landed since the count above
                version = (len(rows), max((r.row_id for r in rows), default=0))
                out[account_id] = _History(version, tuple(r.signal for r in rows))
        for account_id, entry in out.items():
            self._put(self._histories, account_id, entry)
        return {a: (h.signals, h.version) for a, h in out.items()}

    def record(
        self, account: Account, as_of: AsOf, derived: Sequence[DerivedFact] = ()
    ) -> dict[str, Any]:
        """The account's fact record at `as_of` (an instant, or a day read at its end:
        facts/days.py), with the rules' `derived` facts when asked for; a record cached with
        more derived facts serves a request for fewer."""
        return self.records([(account, as_of)], derived)[0]

    def records(
        self, wanted: Sequence[tuple[Account, AsOf]], derived: Sequence[DerivedFact] = ()
    ) -> list[dict[str, Any]]:
        """`record` of many accounts: their histories read together, and the facts of
        those not cached derived together (facts.derive_many: one pass over all of them).
        Raises the first derivation failure (`records_or_errors` isolates them)."""
        out = self.records_or_errors(wanted, derived)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return [r for r in out if not isinstance(r, Exception)]

    def record_or_error(
        self, account: Account, as_of: AsOf, derived: Sequence[DerivedFact] = ()
    ) -> dict[str, Any] | Exception:
        """`record`, or why the account's facts cannot be derived (a stored signal they
        cannot be computed from); reading the store may still raise."""
        return self.records_or_errors([(account, as_of)], derived)[0]

    def records_or_errors(
        self, wanted: Sequence[tuple[Account, AsOf]], derived: Sequence[DerivedFact] = ()
    ) -> list[dict[str, Any] | Exception]:
        """`records`, with the exception that derivation raised in place of the record of
        each account whose facts cannot be derived; the other accounts are not affected.
        Reading the store is not isolated: its failures rise."""
        keys = frozenset(d.key for d in derived)
        versions = self.store.signals_versions([a.id for a, _ in wanted])
        served = self._day_records(wanted, versions, keys)
        histories = self.histories(
            [a.id for i, (a, _) in enumerate(wanted) if i not in served], versions
        )
        wanted = [
            (a, when if i in served else _as_of(histories[a.id][0], when))
            for i, (a, when) in enumerate(wanted)
        ]
        out: list[dict[str, Any] | Exception | None] = []
        todo: list[int] = []
        for i, (account, as_of) in enumerate(wanted):
            if i in served:
                out.append(served[i])
                continue
            key = (as_of, histories[account.id][1], account)
            with self._lock:
                hit = self._records.get(account.id)
            if hit is not None and hit.key == key and keys <= hit.derived:
                self._touch(self._records, account.id)
                out.append(dict(hit.record))
            else:
                out.append(None)
                todo.append(i)
        items = [(wanted[i][0], histories[wanted[i][0].id][0], wanted[i][1]) for i in todo]
        done = _derive_each(items, self.model, tuple(derived))
        for i, record in zip(todo, done, strict=True):
            account, as_of = wanted[i]
            if isinstance(record, Exception):  # not cached: a repaired row is seen at once
                out[i] = record
                continue
            key = (as_of, histories[account.id][1], account)
            self._put(self._records, account.id, _Record(key, keys, record))
            out[i] = dict(record)
        return [r for r in out if r is not None]

    def _day_records(
        self,
        wanted: Sequence[tuple[Account, AsOf]],
        versions: dict[str, Version],
        keys: frozenset[str],
    ) -> dict[int, dict[str, Any]]:
        """The day records, by position in `wanted`, that need no history: held here, or
        kept in the store from the same inputs (store/facts_snapshots.py, then held here
        too). Instants are not looked for: only the pipeline asks for them, and it derives."""
        out: dict[int, dict[str, Any]] = {}
        asked: dict[int, tuple[Account, AsOf]] = {}
        for i, (account, when) in enumerate(wanted):
            if isinstance(when, datetime):
                continue
            with self._lock:
                hit = self._records.get(account.id)
            key = (when, versions[account.id], account)
            if hit is not None and hit.key == key and keys <= hit.derived:
                self._touch(self._records, account.id)
                out[i] = dict(hit.record)
            else:
                asked[i] = (account, when)
        found = kept(self.store.engine, {a.id for a, _ in asked.values()}) if asked else {}
        for i, (account, day) in asked.items():
            snap = found.get(account.id)
            version = versions[account.id]
            if (
                snap is None
                or (snap.day, snap.version) != (day, version)
                or not keys <= snap.derived
                or snap.inputs != inputs_digest(account, self._model_key)
            ):
                continue
            record = _Record((day, version, account), snap.derived, snap.record)
            self._put(self._records, account.id, record)
            out[i] = dict(snap.record)
        return out

    def snapshots(self, account_ids: Collection[str]) -> list[Snapshot]:
        """The day records this reader holds for these accounts, to keep in the store for
        the other processes' readers (the pipeline keeps those of the accounts that fired)."""
        with self._lock:
            held = [(a, self._records.get(a)) for a in account_ids]
        out = []
        for account_id, hit in held:
            if hit is None or isinstance(hit.key[0], datetime) or not keepable(hit.record):
                continue
            day, version, account = hit.key
            inputs = inputs_digest(account, self._model_key)
            out.append(Snapshot(account_id, day, version, inputs, hit.derived, hit.record))
        return out

    def culprits(
        self, account: Account, signals: Sequence[Signal], as_of: AsOf
    ) -> dict[str, Exception]:
        """Which of these signals of the account its facts cannot be derived from, each
        alone (by idempotency key): the ones to fix, when an account's facts fail."""
        found: dict[str, Exception] = {}
        wanted = {s.idempotency_key for s in signals}
        # each signal as derivation reads it: the stored row, not a re-validated copy
        stored = self.histories([account.id])[account.id][0]
        for signal in [s for s in stored if s.idempotency_key in wanted] or signals:
            [record] = _derive_each([(account, [signal], as_of)], self.model, ())
            if isinstance(record, Exception):
                found[signal.idempotency_key] = record
        return found

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


def _as_of(history: Sequence[Signal], when: AsOf) -> AsOf:
    """`when`, or its day when that reads the same signals (none of the day's came after the
    instant): the pipeline's evaluation and the playbooks' reads of the day then share one
    cached record."""
    if not isinstance(when, datetime):
        return when
    later = bisect_right(history, when, key=_when)  # the history is in time order
    if later < len(history) and history[later].occurred_at <= end_of_day(utc_day(when)):
        return when
    return utc_day(when)


def _derive(
    items: Sequence[tuple[Account, Sequence[Signal], AsOf]],
    model: HealthModel,
    extra: Sequence[DerivedFact],
) -> list[dict[str, Any]]:
    """One account's facts by the 1-D reference; several together on one grid (each has a
    fixed cost: the grid wins from a handful of accounts on)."""
    if len(items) < BATCH_FROM:
        return [derive(a, s, d, model, extra).record() for a, s, d in items]
    return derive_records(items, model, extra)


def failure_reason(exc: BaseException) -> str:
    """An exception as one line for an operator: its type and message, no traceback."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:REASON_LIMIT]}"


def _derive_each(
    items: Sequence[tuple[Account, Sequence[Signal], AsOf]],
    model: HealthModel,
    extra: Sequence[DerivedFact],
) -> list[dict[str, Any] | Exception]:
    """`_derive`, with each account whose facts cannot be derived isolated: its exception
    in place of its record. Derivation is pure code over stored values, so anything it
    raises is about those values (a row stored before validation was strict, or by hand)."""
    try:
        return list(_derive(items, model, extra))
    except Exception as exc:  # isolated below, one account at a time
        if len(items) == 1:
            return [exc]
    out: list[dict[str, Any] | Exception] = []
    for account, signals, as_of in items:
        try:
            out.append(derive(account, signals, as_of, model, extra).record())
        except Exception as exc:  # this account's facts cannot be derived
            out.append(exc)
    return out


@dataclass(frozen=True)
class _Row:
    row_id: int
    signal: Signal


def _when(signal: Signal) -> Any:
    return signal.occurred_at


def _rows_many(
    store: Store, account_ids: Sequence[str], after: int | None = None, up_to: int | None = None
) -> list[tuple[str, _Row]]:
    """The accounts' rows (with row ids in (after, up_to] when given), in one query per
    500 accounts. Rows were validated when they were stored, so they are rebuilt without
    validating again (this is the hot read of evaluation)."""
    t = SignalRow.__table__.c  # type: ignore[attr-defined]
    out: list[tuple[str, _Row]] = []
    with store.engine.connect() as conn:
        for start in range(0, len(account_ids), 500):
            q = select(
                t.account_id, t.id, t.type, t.occurred_at, t.payload, t.idempotency_key
            ).where(t.account_id.in_(account_ids[start : start + 500]))
            if after is not None:
                q = q.where(t.id > after)
            if up_to is not None:
                q = q.where(t.id <= up_to)
            # a row written by hand may hold anything (a payload that is not an object):
            # derivation, where failures are isolated per account, is where it shows
            out.extend(
                (
                    account_id,
                    _Row(
                        int(row_id),
                        stored_signal(
                            cast(SignalType, _KINDS.get(kind, kind)),
                            account_id,
                            aware(occurred_at),
                            payload,
                            key,
                        ),
                    ),
                )
                for account_id, row_id, kind, occurred_at, payload, key in conn.execute(q)
            )
    return out


# a signal's type; a type no longer known stays as stored (nothing derives from it, and the
# pipeline holds such a row in the quarantine when it comes to evaluate it)
_KINDS: dict[str, SignalType] = {k.value: k for k in SignalType}

_FIELDS = frozenset(Signal.model_fields)
_new = object.__new__
_set = object.__setattr__


def stored_signal(
    kind: SignalType, account_id: str, occurred_at: datetime, payload: Any, key: str
) -> Signal:
    """A signal read back from the store, validated when it was stored: built as
    `Signal.model_construct` builds it, without its per-field work (4.5 us against 1 us a
    signal: a cold account's history is hundreds of rows). tests/store/test_facts.py
    checks the two are equal."""
    signal = _new(Signal)
    _set(
        signal,
        "__dict__",
        {
            "type": kind,
            "account_id": account_id,
            "occurred_at": occurred_at,
            "payload": payload,
            "idempotency_key": key,
        },
    )
    _set(signal, "__pydantic_fields_set__", _FIELDS)
    _set(signal, "__pydantic_extra__", None)
    _set(signal, "__pydantic_private__", None)
    return signal
