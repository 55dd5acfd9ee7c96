"""Repositories over the tables. No engine is built at import time: `Store(url)` builds it."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from sqlmodel import select as orm_select

from csautomation.facts.model import Account, Signal, SignalType
from csautomation.store.engine import aware, make_engine, prepared, sqlite_path, table, upsert
from csautomation.store.tables import (
    AccountRow,
    LocalTaskRow,
    RuleFiringRow,
    SignalRow,
)

DEFAULT_URL = "sqlite:///.csauto/csauto.db"
# built once: its cache key is then memoized (every activity reads its account)
_ACCOUNT_DATA = select(table(AccountRow).c.data).where(table(AccountRow).c.id == bindparam("id"))
# every facts read asks (store/facts.py: freshness)
_VERSIONS = (
    select(table(SignalRow).c.account_id, func.count(), func.max(table(SignalRow).c.id))
    .where(table(SignalRow).c.account_id.in_(bindparam("ids", expanding=True)))
    .group_by(table(SignalRow).c.account_id)
)


class Store:
    def __init__(self, url: str = DEFAULT_URL, read_only: bool = False) -> None:
        """`read_only`: every connection refuses to write, and nothing is created (not the
        SQLite file's folder either): see `store.readonly.open_existing`."""
        if not read_only and (path := sqlite_path(url)) is not None:
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(url, read_only=read_only)

    @classmethod
    def existing(cls, url: str) -> Store:
        """The store at `url` as it is, read-only, for a command that only looks:
        `NoStoreError` when there is none (a SQLite file missing, a PostgreSQL database
        missing or without our tables), `SchemaError` when its schema is not the code's.
        Nothing is created or migrated (store.migrate.check_readable)."""
        from pathlib import Path

        from csautomation.errors import NoStoreError
        from csautomation.store.migrate import check_readable, masked

        path = sqlite_path(url)
        if url.startswith("sqlite") and (path is None or not Path(path).is_file()):
            raise NoStoreError(path or masked(url))
        store = cls(url, read_only=True)
        try:
            check_readable(store.engine)
        except Exception:
            store.engine.dispose()  # the command stops: its connections close now
            raise
        return store

    def create_all(self) -> None:
        """Make the database's schema the code's newest revision: tables created and
        stamped on an empty database, migrations run on an older one; `SchemaError` on a
        database migrated by a newer release (see csautomation.store.migrations)."""
        from csautomation.store.migrate import SchemaError, ensure_schema

        try:
            ensure_schema(self.engine)
        except SchemaError:
            self.engine.dispose()  # the process stops: its connections close now, not at GC
            raise

    def is_empty(self) -> bool:
        """No account, signal, firing or task: a store nothing has been put in yet."""
        with self.engine.connect() as conn:
            return not any(
                conn.execute(select(table(row).c.id).limit(1)).first()
                for row in (AccountRow, SignalRow, RuleFiringRow, LocalTaskRow)
            )

    def session(self) -> Session:
        return Session(self.engine)

    # accounts ---------------------------------------------------------------------------
    def upsert_accounts(self, accounts: Iterable[Account]) -> int:
        n = 0
        with self.session() as s:
            for a in accounts:
                row = s.get(AccountRow, a.id)
                data = a.model_dump(mode="json")
                if row is None:
                    s.add(AccountRow(id=a.id, tenant=a.tenant, data=data))
                else:
                    row.tenant, row.data = a.tenant, data
                    s.add(row)
                n += 1
            s.commit()
        return n

    def list_accounts(self, limit: int = 1000, after: str = "") -> list[Account]:
        """Accounts in id order, `limit` of them from the first id after `after`."""
        t = table(AccountRow)
        q = select(t.c.data).where(t.c.id > after).order_by(t.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [Account.model_validate(d) for d in conn.execute(q).scalars()]

    def account(self, account_id: str) -> Account | None:
        with self.engine.connect() as conn:
            data = conn.execute(_ACCOUNT_DATA, {"id": account_id}).scalar()
        return Account.model_validate(data) if data is not None else None

    # signals ----------------------------------------------------------------------------
    def add_signal(self, signal: Signal) -> bool:
        """Store durably (committed when this returns); False when the idempotency key was
        already stored."""
        t = table(SignalRow)
        values = _signal_row(signal).model_dump(exclude={"id", "part"})
        with self.engine.begin() as conn:
            stmt = prepared(conn, "add_signal", lambda c: _insert_new(c, t))
            return conn.execute(stmt, values).first() is not None

    def add_signals(self, signals: Sequence[Signal]) -> int:
        """Bulk store in one transaction, skipping keys already stored; returns how many
        were new."""
        return len(self.store_signals(signals))

    def store_signals(self, signals: Sequence[Signal]) -> set[str]:
        """Bulk store in one transaction (committed when this returns), skipping keys
        already stored; returns the idempotency keys that were new."""
        t = table(SignalRow)
        now = datetime.now(UTC)
        fresh = {
            sig.idempotency_key: {
                "idempotency_key": sig.idempotency_key,
                "account_id": sig.account_id,
                "type": sig.type.value,
                "occurred_at": sig.occurred_at,
                "payload": sig.payload,
                "received_at": now,
            }
            for sig in signals
        }
        rows = list(fresh.values())
        new: set[str] = set()
        with self.engine.begin() as conn:
            stmt = upsert(conn, t).on_conflict_do_nothing().returning(t.c.idempotency_key)
            for start in range(0, len(rows), 2000):
                new.update(conn.execute(stmt, rows[start : start + 2000]).scalars())
        return new

    def known_accounts(self, account_ids: Collection[str]) -> set[str]:
        """Which of these account ids the store has."""
        ids = list(account_ids)
        t = table(AccountRow)
        out: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                out.update(
                    conn.execute(select(t.c.id).where(t.c.id.in_(ids[start : start + 500])))
                    .scalars()
                    .all()
                )
        return out

    def accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        """The stored accounts among these ids, by id (one query per 500)."""
        ids = list(account_ids)
        t = table(AccountRow)
        out: dict[str, Account] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                q = select(t.c.id, t.c.data).where(t.c.id.in_(ids[start : start + 500]))
                out.update((i, Account.model_validate(d)) for i, d in conn.execute(q))
        return out

    def signals_versions(self, account_ids: Collection[str]) -> dict[str, tuple[int, int]]:
        """`signals_version` of each account, in one query per 500; (0, 0) for none."""
        ids = list(account_ids)
        out = dict.fromkeys(ids, (0, 0))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(_VERSIONS, {"ids": ids[start : start + 500]})
                out.update((a, (int(n), int(newest or 0))) for a, n, newest in rows)
        return out

    def signals_version(self, account_id: str, up_to: int | None = None) -> tuple[int, int]:
        """(count, newest row id) of an account's signals (with row ids up to `up_to`):
        changes whenever one is added."""
        t = table(SignalRow)
        q = select(func.count(), func.max(t.c.id)).where(t.c.account_id == account_id)
        if up_to is not None:
            q = q.where(t.c.id <= up_to)
        with self.engine.connect() as conn:
            n, newest = conn.execute(q).one()
        return int(n), int(newest or 0)

    def signals_for(self, account_id: str) -> list[Signal]:
        """An account's signals, oldest first. Rows were validated when they were stored,
        so they are rebuilt without validating again (this is the hot read of evaluation)."""
        with self.session() as s:
            rows = s.exec(
                orm_select(
                    SignalRow.type,
                    SignalRow.occurred_at,
                    SignalRow.payload,
                    SignalRow.idempotency_key,
                )
                .where(SignalRow.account_id == account_id)
                .order_by(col(SignalRow.occurred_at))
            ).all()
        return [
            Signal.model_construct(
                type=SignalType(kind),
                account_id=account_id,
                occurred_at=aware(occurred_at),
                payload=dict(payload),
                idempotency_key=key,
            )
            for kind, occurred_at, payload, key in rows
        ]

    # rule firings and cooldowns ---------------------------------------------------------
    def record_firing(
        self,
        rule_id: str,
        rule_version: str,
        account_id: str,
        window: int,
        priority: str,
        at: datetime,
        explain: dict[str, Any],
        actions: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Idempotent per (rule, account, cooldown window); False when already recorded.

        The row is also the dispatch outbox: `dispatched_at` stays empty until every
        workflow its actions call for has been started.
        """
        with self.session() as s:
            s.add(
                RuleFiringRow(
                    rule_id=rule_id,
                    rule_version=rule_version,
                    account_id=account_id,
                    window=window,
                    priority=priority,
                    fired_at=at,
                    explain=explain,
                    actions=list(actions),
                )
            )
            try:
                s.commit()
            except IntegrityError:
                return False
        return True

    def last_fired(self, rule_id: str, account_id: str) -> datetime | None:
        with self.session() as s:
            value = s.exec(
                orm_select(func.max(RuleFiringRow.fired_at)).where(
                    RuleFiringRow.rule_id == rule_id, RuleFiringRow.account_id == account_id
                )
            ).one()
        return aware(value) if value else None

    def last_firings(self, account_ids: Collection[str]) -> dict[tuple[str, str], datetime]:
        """When each rule last fired for each of the accounts: (rule, account) -> time."""
        ids = list(account_ids)
        out: dict[tuple[str, str], datetime] = {}
        t = table(RuleFiringRow)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(t.c.rule_id, t.c.account_id, func.max(t.c.fired_at))
                    .where(t.c.account_id.in_(ids[start : start + 500]))
                    .group_by(t.c.rule_id, t.c.account_id)
                ).all()
                out.update({(r, a): aware(at) for r, a, at in rows if at is not None})
        return out


def create_local_task(store: Store, row: LocalTaskRow) -> tuple[int, bool]:
    """Insert once per idempotency key; returns (task id, whether it was created now)."""
    with store.engine.begin() as conn:
        task_id, created, _ = insert_local_task(conn, row)
    return task_id, created


def insert_local_task(conn: Connection, row: LocalTaskRow) -> tuple[int, bool, datetime]:
    """`create_local_task` in the caller's transaction: (task id, whether it was created
    now, when it was created)."""
    t = table(LocalTaskRow)
    stmt = prepared(conn, "insert_local_task", lambda c: _insert_new(c, t))
    created = conn.execute(stmt, row.model_dump(exclude={"id"})).scalar()
    if created is None:  # a retry, or a concurrent one that won: the same task
        task_id, at = conn.execute(
            select(t.c.id, t.c.created_at).where(t.c.idempotency_key == row.idempotency_key)
        ).one()
        return int(task_id), False, aware(at)
    return int(created), True, aware(row.created_at)


def local_tasks(store: Store, workflow_id: str | None = None) -> list[LocalTaskRow]:
    with store.session() as s:
        q = orm_select(LocalTaskRow)
        if workflow_id is not None:
            q = q.where(LocalTaskRow.workflow_id == workflow_id)
        return list(s.exec(q.order_by(col(LocalTaskRow.id))).all())


def _insert_new(conn: Connection, t: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: no id back when the row was there."""
    return upsert(conn, t).on_conflict_do_nothing().returning(t.c.id)


def _signal_row(sig: Signal) -> SignalRow:
    return SignalRow(
        idempotency_key=sig.idempotency_key,
        account_id=sig.account_id,
        type=sig.type.value,
        occurred_at=sig.occurred_at,
        payload=sig.payload,
    )
