"""Every account's signal history as columns (facts/columnar.py), kept between reads and
brought up to date by reading only the rows added since.

Signals are append-only, so a refresh reads the rows with ids above the newest one held,
up to the table's newest at the moment it looked, and checks the table's row count against
what it holds: a row committed out of id order (PostgreSQL sequences allow it) or a row
removed shows as a difference, and then each account's (count, newest id) is compared and
the accounts that differ are read again in full. A reader so never misses a signal that was
committed when its refresh began. (A row removed while another is committed out of order
would cancel out in the count: signals are never removed.)

On SQLite the query extracts the payload fields derive reads (`json_extract`), so that no
payload is parsed in Python; elsewhere Python parses them. One difference is known: a
payload written by hand with the same key twice reads its first value in SQLite and its
last in Python.

Not thread-safe: one owner (the scheduler's sweep) refreshes and reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import String, case, func, literal, null, select, type_coerce

from csautomation.facts.columnar import DAY, MICRO, USAGE, WIDTH, Rows, slots
from csautomation.store.engine import aware, table
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow

log = logging.getLogger(__name__)

Version = tuple[int, int]  # (signal count, newest row id), as Store.signals_version
EMPTY: Rows = np.zeros((0, WIDTH))
_PAGE = 50_000  # rows fetched at a time
# the length of SQLAlchemy's SQLite DateTime text ("2026-11-01 06:00:00.000000"), which numpy
# parses (any other text goes the reference way)
_STORED_LENGTH = 26
_EPOCH_TEXT = "1970-01-01 00:00:00.000000"
_EXACT = 2**53
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000


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
        # SQLite extracts the payload fields derive reads; elsewhere Python parses the JSON
        self.in_sql = store.engine.dialect.name == "sqlite"

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
        read = sum(len(r.rows) for r in added.values())
        for account_id, got in added.items():
            self._extend(account_id, got)
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
                self._extend(account_id, fresh[account_id], replace=True)
                read += len(fresh[account_id].rows)
        self._count = sum(v[0] for v in self.versions.values())
        self._newest = max([self._newest, *(v[1] for v in self.versions.values())])
        self.refreshes += 1
        log.info("columnar histories: %d accounts read again in full", len(stale))
        return read

    def _forget(self, account_id: str) -> None:
        self.histories.pop(account_id, None)
        self.versions.pop(account_id, None)
        self.irregular.discard(account_id)

    def _extend(self, account_id: str, read: _Read, replace: bool = False) -> None:
        """Add an account's rows read (in row id order), or with `replace` put them in
        place of those held. The account's array is replaced, never changed: a sweep
        reading it meanwhile sees the old one whole."""
        count, newest = (0, 0) if replace else self.versions.get(account_id, (0, 0))
        held = None if replace else self.histories.get(account_id)
        # signal order: by moment, then row id (held rows are in order and have lower ids
        # than added ones, and read rows come in id order): a stable sort by moment keeps
        # both, and is needed only where a row read is earlier than the one before it
        if held is None or not len(held):
            merged, ordered = read.rows, read.ordered
        else:
            merged = np.concatenate((held, read.rows))
            ordered = read.ordered and (held[-1, DAY], held[-1, MICRO]) <= read.first
        if not ordered:
            merged = merged[np.lexsort((merged[:, MICRO], merged[:, DAY]))]
        if read.bad:  # before the rows show: a sweep must not read them as columns
            self.irregular.add(account_id)
        self.histories[account_id] = merged
        self.versions[account_id] = (count + len(read.rows), max(newest, read.newest))
        if replace and not read.bad:
            self.irregular.discard(account_id)

    def _read(self, *where: Any) -> dict[str, _Read]:
        """The rows matching `where`, by account, in row id order."""
        t = table(SignalRow)
        got = _Collected()
        with self.store.engine.connect() as conn:
            if not self.in_sql:
                q = select(*_columns()).where(*where).order_by(t.c.id)
                for part in conn.execution_options(yield_per=_PAGE).execute(q).partitions():
                    got.add(part)
                return got.by_account()
            # JSON functions fail the query on a payload that is not JSON: those rows are
            # read apart (and their accounts derived the reference way)
            valid = func.json_valid(t.c.payload) == 1
            for kept in (valid, ~valid):
                q = select(*_sqlite_columns(kept is valid)).where(*where, kept).order_by(t.c.id)
                # the driver's tuples as they are, every column a plain SQL value (rows and
                # processors would cost more than the parsing): SQLAlchemy compiles the
                # statement, the driver runs it
                compiled = q.compile(
                    dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
                )
                params = [compiled.params[k] for k in compiled.positiontup or ()]
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(str(compiled), params)
                    while part := cursor.fetchmany(_PAGE):
                        got.add_sqlite(part)
                finally:
                    cursor.close()
        return got.by_account()


class _Read(NamedTuple):  # a tuple: made once an account a refresh, cheaper than a class
    rows: Rows
    newest: int  # row id
    bad: bool  # a row the columns cannot hold
    ordered: bool  # the rows are in signal order
    first: tuple[float, float]  # the first row's (DAY, MICRO)


def _columns() -> list[Any]:
    t = table(SignalRow)
    return [t.c.id, t.c.account_id, t.c.type, t.c.occurred_at, t.c.payload]


# What derive reads of each type's payload, in the order `slots` is given them: SQLite
# extracts these (json_extract), so that no payload is parsed in Python.
FIELDS: dict[str, tuple[str, ...]] = {
    "usage_daily": ("logins", "active_users", "feature_events"),
    "meeting": ("status",),
    "nps_response": ("score",),
    "support_ticket": ("priority",),
    "outcome_review": ("goals_met_pct",),
    "stakeholder_change": ("change", "role"),
    "churn_prediction": ("probability",),
    "contract_update": ("renewal_date", "arr", "seats"),
}
_NULL = "null"  # a JSON null where derive reads a default when the field is missing


def _sqlite_columns(valid: bool) -> list[Any]:
    """The columns of a row whose payload is JSON (`valid`) or not."""
    t = table(SignalRow)
    p = t.c.payload
    # the stored text of the moment: parsed below for all rows at once
    when = type_coerce(t.c.occurred_at, String)
    if not valid:
        return [
            t.c.id,
            t.c.account_id,
            t.c.type,
            when,
            *(literal("invalid"), null(), null(), null()),
        ]

    def field(i: int) -> Any:
        # A JSON null reads as SQL NULL, as a missing field does: derive tells them apart
        # for the one field with a default (feature_events), so the query does too. A
        # payload that is not an object gives NULL here, and `shape` tells it.
        whens = []
        for signal, names in FIELDS.items():
            if i < len(names):
                path = f"$.{names[i]}"
                value: Any = func.json_extract(p, path)
                if names[i] == "feature_events":
                    value = case((func.json_type(p, path) == "null", literal(_NULL)), else_=value)
                whens.append((t.c.type == signal, value))
        return case(*whens)

    return [t.c.id, t.c.account_id, t.c.type, when, func.json_type(p), field(0), field(1), field(2)]


class _Collected:
    """Rows read, as columns, until they are split by account."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.accounts: list[str] = []
        self.days: list[int] = []
        self.micros: list[int] = []
        self.slots: list[tuple[int, float, float, float]] = []
        self.bad: set[str] = set()

    def _slots(self, account_id: str, got: tuple[int, float, float, float] | None) -> None:
        if got is None:
            self.bad.add(account_id)
            got = (-1, 0.0, 0.0, 0.0)
        self.slots.append(got)

    def add(self, rows: Sequence[Any]) -> None:
        for row_id, account_id, kind, occurred_at, payload in rows:
            at = aware(occurred_at).astimezone(UTC)
            self.ids.append(row_id)
            self.accounts.append(account_id)
            self.days.append(at.toordinal())
            self.micros.append(
                (at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000 + at.microsecond
            )
            self._slots(account_id, slots(kind, payload))

    def add_sqlite(self, rows: Sequence[Any]) -> None:
        texts: list[str] = []
        append = self.slots.append
        for row_id, account_id, kind, text, shape, v0, v1, v2 in rows:
            self.ids.append(row_id)
            self.accounts.append(account_id)
            if type(text) is str and len(text) == _STORED_LENGTH:
                texts.append(text)
            else:  # not as SQLAlchemy writes it: read the reference way
                texts.append(_EPOCH_TEXT)
                self.bad.add(account_id)
            if (  # most rows: a day's usage in whole numbers, as `slots` would keep it
                kind == "usage_daily"
                and type(v0) is int
                and type(v1) is int
                and type(v2) is int
                and -_EXACT < v0 < _EXACT
                and -_EXACT < v1 < _EXACT
                and -_EXACT < v2 < _EXACT
            ):
                append((USAGE, float(v0), float(v1), float(v2)))
                continue
            payload: Any = None
            if shape == "object":
                names = FIELDS.get(kind, ())
                values = (v0, v1, v2)
                payload = {n: values[i] for i, n in enumerate(names) if values[i] is not None}
            self._slots(account_id, slots(kind, payload))
        try:
            micros = np.array(texts, dtype="datetime64[us]").astype(np.int64)
        except ValueError:  # one at a time: those numpy cannot read go the reference way
            micros = np.array(
                [
                    self._moment(t, a)
                    for t, a in zip(texts, self.accounts[-len(texts) :], strict=True)
                ],
                dtype=np.int64,
            )
        days = micros // _DAY_US
        self.days.extend((days + _EPOCH_ORDINAL).tolist())
        self.micros.extend((micros - days * _DAY_US).tolist())

    def _moment(self, text: str, account_id: str) -> int:
        try:
            return int(np.datetime64(text, "us").astype(np.int64))
        except ValueError:
            self.bad.add(account_id)
            return 0

    def by_account(self) -> dict[str, _Read]:
        if not self.ids:
            return {}
        index: dict[str, int] = {}
        owner = np.fromiter((index.setdefault(a, len(index)) for a in self.accounts), np.intp)
        codes = np.array(self.slots, dtype=np.float64).reshape(-1, 4)
        matrix = np.column_stack((self.days, self.micros, codes)).astype(np.float64)
        order = np.argsort(owner, kind="stable")  # each account's rows stay in id order
        ids = np.asarray(self.ids, dtype=np.int64)[order]
        matrix, owner = matrix[order], owner[order]
        lows = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
        highs = np.r_[lows[1:], len(owner)]
        # out of order: a row earlier than the one before it, of the same account
        day, micro = matrix[:, DAY], matrix[:, MICRO]
        back = (day[1:] < day[:-1]) | ((day[1:] == day[:-1]) & (micro[1:] < micro[:-1]))
        back[lows[1:] - 1] = False  # the first row of an account follows another's
        unordered = np.add.reduceat(np.r_[back, False], lows) > 0
        names = list(index)
        out: dict[str, _Read] = {}
        for lo, hi, who, newest, messy, first in zip(
            lows.tolist(),
            highs.tolist(),
            owner[lows].tolist(),
            ids[highs - 1].tolist(),
            unordered.tolist(),
            zip(day[lows].tolist(), micro[lows].tolist(), strict=True),
            strict=True,
        ):
            account_id = names[who]
            out[account_id] = _Read(matrix[lo:hi], newest, account_id in self.bad, not messy, first)
        return out
