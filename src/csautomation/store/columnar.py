"""Every account's signal history as columns (facts/columnar.py), kept between reads and
brought up to date by reading only the rows added since.

Signals are append-only, so a refresh reads the rows with ids above the newest one held,
up to the table's newest at the moment it looked, and checks the table's row count against
what it holds: a row committed out of id order (PostgreSQL sequences allow it) or a row
removed shows as a difference, and then each account's (count, newest id) is compared and
the accounts that differ are read again in full. A reader so never misses a signal that was
committed when its refresh began.

Not thread-safe: one owner (the scheduler's sweep) refreshes and reads it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC
from typing import Any

import numpy as np
from sqlalchemy import func, select

from csautomation.facts.columnar import DAY, MICRO, WIDTH, Rows, slots
from csautomation.store.engine import aware, table
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow

log = logging.getLogger(__name__)

Version = tuple[int, int]  # (signal count, newest row id), as Store.signals_version
EMPTY: Rows = np.zeros((0, WIDTH))
_PAGE = 50_000  # rows fetched at a time: memory stays flat while a history is read


class ColumnarHistories:
    """Column histories of every account that has signals; `irregular` names those with a
    row the columns cannot hold (derive them from Signal objects instead)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.histories: dict[str, Rows] = {}
        self.versions: dict[str, Version] = {}
        self.irregular: set[str] = set()
        self._count = 0  # rows held
        self._newest = 0  # newest row id read
        self.refreshes = 0  # full re-reads of accounts (a count that did not add up)

    def history(self, account_id: str) -> Rows:
        return self.histories.get(account_id, EMPTY)

    def refresh(self) -> int:
        """Read what was added since the last refresh; returns the rows read."""
        t = table(SignalRow)
        with self.store.engine.connect() as conn:
            total, newest = conn.execute(select(func.count(), func.max(t.c.id))).one()
        total, newest = int(total), int(newest or 0)
        if (total, newest) == (self._count, self._newest):
            return 0
        added = self._read(t.c.id > self._newest, t.c.id <= newest) if newest > self._newest else {}
        read = sum(len(rows) for rows, _ in added.values())
        for account_id, (rows, bad) in added.items():
            self._extend(account_id, rows, bad)
        self._count += read
        self._newest = max(self._newest, newest)
        if self._count != total:
            read += self._reconcile()
        return read

    def _reconcile(self) -> int:
        """Read again, in full, each account whose stored (count, newest id) is not the one
        held, and forget those with no signal left."""
        t = table(SignalRow)
        with self.store.engine.connect() as conn:
            stored = {
                a: (int(n), int(newest))
                for a, n, newest in conn.execute(
                    select(t.c.account_id, func.count(), func.max(t.c.id)).group_by(t.c.account_id)
                )
            }
        stale = [a for a, v in stored.items() if self.versions.get(a) != v]
        for gone in set(self.versions) - set(stored):
            self._forget(gone)
        read = 0
        for start in range(0, len(stale), 500):
            part = stale[start : start + 500]
            fresh = self._read(t.c.account_id.in_(part))
            for account_id in part:
                if account_id not in fresh:
                    self._forget(account_id)
                    continue
                rows, bad = fresh[account_id]
                self._extend(account_id, rows, bad, replace=True)
                read += len(rows)
        self._count = sum(v[0] for v in self.versions.values())
        self._newest = max([self._newest, *(v[1] for v in self.versions.values())])
        self.refreshes += 1
        log.info("columnar histories: %d accounts read again in full", len(stale))
        return read

    def _forget(self, account_id: str) -> None:
        self.histories.pop(account_id, None)
        self.versions.pop(account_id, None)
        self.irregular.discard(account_id)

    def _extend(
        self, account_id: str, rows: list[tuple[Any, ...]], bad: bool, replace: bool = False
    ) -> None:
        """Add an account's rows (each (day, micro, type, a, b, c, row id), in row id order),
        or with `replace` put them in place of those held. The account's array is replaced,
        never changed: a sweep reading it meanwhile sees the old one whole."""
        count, newest = (0, 0) if replace else self.versions.get(account_id, (0, 0))
        new = np.array([r[:-1] for r in rows], dtype=np.float64)
        held = None if replace else self.histories.get(account_id)
        merged = new if held is None else np.concatenate((held, new))
        # signal order: by moment, then row id (held rows have lower ids than added ones,
        # and within `new` rows come in id order): a stable sort by moment keeps both
        if len(merged) > 1 and not _in_order(merged):
            merged = merged[np.lexsort((merged[:, MICRO], merged[:, DAY]))]  # stable
        if bad:  # before the rows show: a sweep must not read them as columns
            self.irregular.add(account_id)
        self.histories[account_id] = merged
        self.versions[account_id] = (count + len(rows), max(newest, rows[-1][-1]))
        if replace and not bad:
            self.irregular.discard(account_id)

    def _read(self, *where: Any) -> dict[str, tuple[list[tuple[Any, ...]], bool]]:
        """The rows matching `where`, by account, in row id order, each as a column row
        with its id; and whether the account has a row the columns cannot hold."""
        t = table(SignalRow)
        q = (
            select(t.c.id, t.c.account_id, t.c.type, t.c.occurred_at, t.c.payload)
            .where(*where)
            .order_by(t.c.id)
        )
        out: dict[str, tuple[list[tuple[Any, ...]], bool]] = {}
        rows_of: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        bad: set[str] = set()
        with self.store.engine.connect() as conn:
            result = conn.execution_options(yield_per=_PAGE).execute(q)
            for row_id, account_id, kind, occurred_at, payload in result:
                at = aware(occurred_at).astimezone(UTC)
                got = slots(kind, payload)
                if got is None:
                    bad.add(account_id)
                    got = (-1, 0.0, 0.0, 0.0)
                code, a, b, c = got
                micros = (at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000 + at.microsecond
                rows_of[account_id].append((at.toordinal(), micros, code, a, b, c, row_id))
        for account_id, rows in rows_of.items():
            out[account_id] = (rows, account_id in bad)
        return out


def _in_order(rows: Rows) -> bool:
    day, micro = rows[:, DAY], rows[:, MICRO]
    later = (day[1:] > day[:-1]) | ((day[1:] == day[:-1]) & (micro[1:] >= micro[:-1]))
    return bool(later.all())
