"""What the scheduler keeps between sweeps, so that the daily sweep of every account reads
only what changed since the last one.

It holds every account (its stored JSON text and the validated Account: a page of
accounts is re-validated only where the text changed) and every account's signal history
as columns (store/columnar.py: the rows added since are read, nothing else). A sweep's
facts are then derived straight from the columns (facts/columnar.py feeding derive_many's
grid), equal to derive's. An account with a row the columns cannot hold is derived by the
FactsReader from Signal objects, alone, so that it gets derive's own record or error.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Text, cast, select

from csautomation.facts.catalog import FactType
from csautomation.facts.columnar import gather_columns
from csautomation.facts.days import AsOf
from csautomation.facts.derive_many import LastDay, last_day_of
from csautomation.facts.derived import DECIMALS, DerivedFact, SignalsFact, norm
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account
from csautomation.facts.numeric import F
from csautomation.rules.batch import EXACT, Columns
from csautomation.rules.ir import fact_type
from csautomation.store.columnar import ColumnarHistories
from csautomation.store.engine import table
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.store.tables import AccountRow

log = logging.getLogger(__name__)


class SweepFacts:
    """Accounts and their facts for sweeps. Sweeps of several rules may run at once, and a
    sweep derives several pages at once: the refresh is serialised, and facts are derived
    from arrays that are replaced, never changed."""

    def __init__(
        self, store: Store, model: HealthModel, fallback: FactsReader | None = None
    ) -> None:
        self.store = store
        self.model = model
        self.columns = ColumnarHistories(store)
        self.fallback = fallback or FactsReader(store, model)
        self._accounts: dict[str, tuple[str, Account]] = {}
        self._lock = threading.Lock()
        self._counting = threading.Lock()  # pages' facts are derived on several threads
        self.derived_from_columns = 0  # accounts, since this was made (for the benchmark)
        self.derived_from_signals = 0

    def pages(self, chunk: int) -> Iterator[list[Account]]:
        """Every account, in id order, `chunk` at a time, with the signal histories
        brought up to date first (a sweep reads one moment's data throughout)."""
        with self._lock:
            self.columns.refresh()
            accounts = self.accounts()
        for start in range(0, len(accounts), chunk):
            yield accounts[start : start + chunk]

    def accounts(self) -> list[Account]:
        """Every account in id order; only those whose stored data changed are validated."""
        t = table(AccountRow)
        held, fresh = self._accounts, {}
        # the stored text, not the parsed JSON: an unchanged account costs a comparison
        q = select(t.c.id, cast(t.c.data, Text)).order_by(t.c.id)
        with self.store.engine.connect() as conn:
            for account_id, text in conn.execute(q):
                kept = held.get(account_id)
                if kept is None or kept[0] != text:
                    kept = (text, Account.model_validate(json.loads(text)))
                fresh[account_id] = kept
        self._accounts = fresh
        return [account for _, account in fresh.values()]

    def records_or_errors(
        self, wanted: Sequence[tuple[Account, AsOf]], derived: Sequence[DerivedFact] = ()
    ) -> list[dict[str, Any] | Exception]:
        """FactsReader.records_or_errors, from the columns held (read at the last `pages`)."""
        view, errors = self.facts(wanted, derived)
        return [errors[i] if i in errors else view.record(i) for i in range(len(wanted))]

    def facts(
        self, wanted: Sequence[tuple[Account, AsOf]], derived: Sequence[DerivedFact] = ()
    ) -> tuple[Facts, dict[int, Exception]]:
        """The facts of each account, and why those of some (by position) cannot be
        derived; their records are made when asked for."""
        view = Facts(len(wanted))
        errors: dict[int, Exception] = {}
        by_day: dict[date, list[int]] = defaultdict(list)
        rest: list[int] = []
        irregular = self.columns.irregular
        for i, (account, as_of) in enumerate(wanted):
            if isinstance(as_of, datetime) or account.id in irregular:
                rest.append(i)  # an instant reads part of a day: the reference path
            else:
                by_day[as_of].append(i)
        count_types = {t for f in derived if isinstance(f, SignalsFact) for t in f.types}
        for day, idx in by_day.items():
            accounts = [wanted[i][0] for i in idx]
            try:
                updates = gather_columns(
                    [self.columns.history(a.id) for a in accounts], day, count_types
                )
                view.add(idx, last_day_of(updates, accounts, day, self.model, derived))
            except Exception:  # derived again below, where failures are isolated per account
                log.warning("sweep facts: a batch of %d from columns failed", len(idx))
                rest.extend(idx)
                continue
            with self._counting:
                self.derived_from_columns += len(idx)
        for i in sorted(rest):
            # one at a time: derive's own verdict on each, whatever else is in the batch
            # (a grid of many accounts reads some bad values that derive rejects)
            got = self.fallback.record_or_error(*wanted[i], derived)
            if isinstance(got, Exception):
                errors[i] = got
            else:
                view.put(i, got)
            with self._counting:
                self.derived_from_signals += 1
        return view, errors


class Facts:
    """A batch's facts: the columns a rule reads, for every account at once, and the
    records of those asked for (a sweep explains the few that matched)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._records: dict[int, dict[str, Any]] = {}
        self._last: list[tuple[list[int], LastDay]] = []
        self._where: dict[int, tuple[LastDay, int]] = {}

    @classmethod
    def of(cls, records: Sequence[dict[str, Any]]) -> Facts:
        out = cls(len(records))
        for i, record in enumerate(records):
            out.put(i, record)
        return out

    def put(self, i: int, record: dict[str, Any]) -> None:
        self._records[i] = record

    def add(self, positions: list[int], last: LastDay) -> None:
        self._last.append((positions, last))
        self._where.update((p, (last, j)) for j, p in enumerate(positions))

    def record(self, i: int) -> dict[str, Any]:
        return self.records([i])[0]

    def records(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """The records at `positions`, made together: a record made alone costs a batch's
        overhead."""
        out: dict[int, dict[str, Any]] = {
            p: dict(self._records[p]) for p in positions if p in self._records
        }
        by_last: dict[int, tuple[LastDay, list[int], list[int]]] = {}
        for p in positions:
            if p not in out:
                last, j = self._where[p]
                _, at, which = by_last.setdefault(id(last), (last, [], []))
                at.append(p)
                which.append(j)
        for last, at, which in by_last.values():
            out.update(zip(at, last.records(which), strict=True))
        return [out[p] for p in positions]

    def columns(self, positions: Sequence[int], keys: Sequence[str]) -> Columns:
        """The columns of `keys` over the accounts at `positions`, in that order: equal to
        Columns.from_records of their records (made of the same values, `keys` alone). A
        number or boolean fact is read straight from the arrays, as the records would give
        it: no record is made for it."""
        direct = [
            k
            for k in keys
            if fact_type(k) in _NUMERIC and all(k in last.values for _, last in self._last)
        ]
        rest = [k for k in keys if k not in direct]
        cols = Columns(len(positions))
        if rest:
            thin: dict[int, dict[str, Any]] = dict(self._records)
            for at, last in self._last:
                thin.update(zip(at, last.records(keys=rest), strict=True))
            cols = Columns.from_records([thin[p] for p in positions], rest)
        own = [p for p in positions if p in self._records]
        numbers: dict[str, F] = {}
        for key in direct:
            column = np.full(self.size, np.nan)
            for at, last in self._last:
                column[at] = as_read(last.values[key], fact_type(key) == FactType.boolean)
            if own:
                mine = Columns.from_records([self._records[p] for p in own], [key])
                column[own] = mine.numbers[key]
            numbers[key] = column[positions]
        numbers |= cols.numbers  # in the order of `keys`, as from_records adds them
        cols.numbers = {k: numbers[k] for k in keys if k in numbers}
        return cols


_NUMERIC = (FactType.number, FactType.boolean)


def as_read(values: F, boolean: bool) -> F:
    """What Columns.from_records reads of a fact whose last-day values are `values`, from
    the records LastDay makes of them: the value derived.norm() gives (NaN: missing), then
    float(); a value numpy's rounding would change goes through norm() itself, as there."""
    if boolean:
        return np.where(np.isnan(values), np.nan, (values != 0) * 1.0)
    out = values + 0.0  # a copy, and -0.0 made 0.0 as int() makes it
    with np.errstate(invalid="ignore", over="ignore"):
        # whole numbers, and numbers numpy's rounding leaves as they are below EXACT, are
        # norm's too (rules/batch.py's _numbers says why)
        plain = (np.abs(values) < 2**53) & (values == np.floor(values))
        plain |= (np.round(values, DECIMALS) == values) & (np.abs(values) < EXACT)
        plain |= np.isnan(values)
    rest = np.flatnonzero(~plain)
    normed = [norm(v) for v in values[rest].tolist()]  # the records' values
    x = np.array([np.nan if v is None else float(v) for v in normed], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # from_records' second look
        again = ~((np.round(x, DECIMALS) == x) & (np.abs(x) < EXACT)) & ~np.isnan(x)
    for i in np.flatnonzero(again).tolist():
        x[i] = float(norm(normed[i]))
    out[rest] = x
    return out
