"""The decision ledger's hash chain, and its verification (`csauto audit verify`).

Each entry carries the hash of the entry before it (`prev_hash`, "" for the first) and its
own: sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of its fields, all but
`id` and `hash`, with `at` in UTC ISO 8601 to the microsecond and `prev_hash` among them.
The chain runs in id order. An entry edited by hand no longer matches its hash; one removed
leaves the next pointing at a hash that is nowhere; one moved points at an entry that is
now elsewhere. So the append-only triggers are the lock on the door, and the chain shows
whether someone with the owner's role took it off.

Appends are serialised so that the chain stays one line: on PostgreSQL a transaction-scoped
advisory lock, held to the commit; on SQLite the write lock (`BEGIN IMMEDIATE` when the
transaction has not written yet). No table a writer writes before it appends is written by
another after it has appended, so two writers never wait for each other. A unique index on
`prev_hash` refuses a fork whatever happens.

What a chain cannot show is entries cut from its end. `verify` reports the head (the last
entry's id and hash); keep it with the audit, and `--head HASH` later proves that entry is
still there with everything before it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from csautomation.store.engine import aware, table
from csautomation.store.tables import DecisionRow

__all__ = [
    "FIELDS",
    "GENESIS",
    "Break",
    "Guard",
    "Verification",
    "entry_hash",
    "last_hash",
    "serialise",
    "verify",
]

LEDGER = table(DecisionRow)
GENESIS = ""  # the first entry's prev_hash
# what an entry's hash covers, prev_hash last; id (its place) and hash itself are not in it
FIELDS = (
    "key",
    "kind",
    "at",
    "account_id",
    "rule_id",
    "rule_version",
    "firing_id",
    "playbook_id",
    "playbook_version",
    "workflow_id",
    "step_id",
    "connector",
    "record_id",
    "detail",
    "prev_hash",
)
# pg_advisory_xact_lock's key: "ledger" in ASCII (migrations use "csauto")
_LOCK_KEY = 0x6C6564676572
SHOWN_BREAKS = 100


def canonical_at(value: datetime) -> str:
    return aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(values: Mapping[str, Any], prev_hash: str) -> str:
    """The hash of an entry with these field values, chained after `prev_hash`."""
    body = {name: values[name] for name in FIELDS[:-1]}
    body["at"] = canonical_at(body["at"])
    body["prev_hash"] = prev_hash
    data = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def serialise(conn: Connection) -> None:
    """Hold the ledger's append lock to the end of `conn`'s transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("select pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        # pysqlite begins a transaction only at its first write: take the write lock now,
        # so that the last hash read next is still the last when this transaction inserts
        if not getattr(raw, "in_transaction", True):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def last_hash(conn: Connection) -> str:
    found = conn.execute(select(LEDGER.c.hash).order_by(LEDGER.c.id.desc()).limit(1)).scalar()
    return str(found) if found is not None else GENESIS


# ---- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """Where the chain breaks: `problem` is altered, missing or reordered."""

    entry: int
    problem: str
    detail: str

    def render(self) -> str:
        return f"entry #{self.entry} {self.problem}: {self.detail}"


@dataclass(frozen=True)
class Guard:
    """One statement the database must refuse: is a trigger there for it, and what a probe
    (in a transaction rolled back whatever happens) found: refused, allowed, or untested."""

    operation: str
    trigger: bool
    probe: str

    @property
    def ok(self) -> bool:
        return self.trigger and self.probe != "allowed"

    def render(self) -> str:
        if self.ok:
            return f"{self.operation} refused" + (
                "" if self.probe == "refused" else f" (trigger there; {self.probe})"
            )
        why = "no trigger" if not self.trigger else "a trigger, but the statement went through"
        return f"{self.operation} ALLOWED ({why})"


@dataclass
class Verification:
    entries: int = 0
    head_id: int | None = None
    head_hash: str = GENESIS
    breaks: list[Break] = field(default_factory=list)
    more_breaks: int = 0  # beyond the SHOWN_BREAKS listed
    guards: list[Guard] = field(default_factory=list)
    expected_head: str | None = None
    expected_head_found: bool | None = None

    @property
    def ok(self) -> bool:
        return (
            not self.breaks
            and all(g.ok for g in self.guards)
            and self.expected_head_found is not False
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "entries": self.entries,
            "head": {"id": self.head_id, "hash": self.head_hash} if self.head_id else None,
            "breaks": [b.__dict__ for b in self.breaks],
            "more_breaks": self.more_breaks,
            "guards": [{**g.__dict__, "ok": g.ok} for g in self.guards],
            "expected_head": self.expected_head,
            "expected_head_found": self.expected_head_found,
        }


def verify(engine: Engine, expected_head: str | None = None) -> Verification:
    """Walk the chain, then probe the append-only triggers. Reads only: every probe runs in
    a transaction that is rolled back."""
    result = Verification(expected_head=expected_head)
    dangling: list[tuple[int, int | None, str]] = []  # (entry, the one before it, its link)
    with engine.connect() as conn:
        expected, before = GENESIS, None
        for row in _rows(conn):
            result.entries += 1
            entry = int(row["id"])
            if entry_hash(row, row["prev_hash"]) != row["hash"]:
                result.breaks.append(
                    Break(
                        entry, "altered", "its fields do not match its hash: changed since written"
                    )
                )
            if row["prev_hash"] != expected:
                dangling.append((entry, before, row["prev_hash"]))
            if expected_head is not None and row["hash"] == expected_head:
                result.expected_head_found = True
            expected, before = row["hash"], entry
        result.head_id, result.head_hash = before, expected
        result.breaks.extend(_links(conn, dangling[:SHOWN_BREAKS]))
    result.breaks.sort(key=lambda b: b.entry)
    result.more_breaks = max(len(result.breaks) - SHOWN_BREAKS, 0) + max(
        len(dangling) - SHOWN_BREAKS, 0
    )
    del result.breaks[SHOWN_BREAKS:]
    if expected_head is not None and result.expected_head_found is None:
        result.expected_head_found = False
    result.guards = guards(engine, has_entries=result.entries > 0)
    return result


def _rows(conn: Connection) -> Iterator[dict[str, Any]]:
    stmt = select(LEDGER).order_by(LEDGER.c.id)
    for row in conn.execution_options(yield_per=1000).execute(stmt).mappings():
        yield dict(row)


def _links(conn: Connection, dangling: list[tuple[int, int | None, str]]) -> Iterator[Break]:
    """What each link that does not point at the entry before it points at instead."""
    wanted = {link for _, _, link in dangling if link != GENESIS}
    where: dict[str, int] = {}
    if wanted:
        found = conn.execute(select(LEDGER.c.hash, LEDGER.c.id).where(LEDGER.c.hash.in_(wanted)))
        where = {h: int(i) for h, i in found}
    for entry, before, link in dangling:
        now = f"now after #{before}" if before is not None else "now the first"
        if link == GENESIS:
            yield Break(entry, "reordered", f"it was the first entry, {now}")
        elif link in where:
            yield Break(entry, "reordered", f"it was written after #{where[link]}, {now}")
        elif before is None:
            yield Break(entry, "missing", f"the entries before it are gone (it follows {link})")
        else:
            yield Break(
                entry,
                "missing",
                f"the entry it was written after ({link[:12]}…) is not in the ledger: "
                f"removed, or altered and re-hashed (between #{before} and #{entry})",
            )


# ---- the append-only triggers --------------------------------------------------------------

_PROBES = {
    "UPDATE": "UPDATE decision_ledger SET key = key "
    "WHERE id = (SELECT min(id) FROM decision_ledger)",
    "DELETE": "DELETE FROM decision_ledger WHERE id = (SELECT min(id) FROM decision_ledger)",
    "TRUNCATE": "TRUNCATE decision_ledger",
}
# pg_trigger.tgtype bits
_PG_EVENTS = {"DELETE": 8, "UPDATE": 16, "TRUNCATE": 32}
_PG_BEFORE = 2


def guards(engine: Engine, has_entries: bool = True) -> list[Guard]:
    """UPDATE and DELETE (and TRUNCATE on PostgreSQL): refused by a trigger? Checked in the
    catalog, then tried and rolled back (row triggers fire only on a row: with no entries,
    the catalog alone answers)."""
    postgres = engine.dialect.name == "postgresql"
    operations = ("UPDATE", "DELETE", "TRUNCATE") if postgres else ("UPDATE", "DELETE")
    with engine.connect() as conn:
        present = _pg_triggers(conn) if postgres else _sqlite_triggers(conn)
    out = []
    for op in operations:
        row_level = op != "TRUNCATE"
        probe = _probe(engine, op) if has_entries or not row_level else "untested: no entries"
        out.append(Guard(op, op in present, probe))
    return out


def _sqlite_triggers(conn: Connection) -> set[str]:
    rows = conn.execute(
        text(
            "select name, sql from sqlite_master "
            "where type = 'trigger' and tbl_name = 'decision_ledger'"
        )
    )
    found = set()
    for _name, sql in rows:
        words = " ".join(str(sql).upper().split())
        for op in ("UPDATE", "DELETE"):
            if f"BEFORE {op} ON DECISION_LEDGER" in words and "RAISE(ABORT" in words:
                found.add(op)
    return found


def _pg_triggers(conn: Connection) -> set[str]:
    rows = conn.execute(
        text(
            "select tgtype from pg_trigger where tgrelid = 'decision_ledger'::regclass "
            "and not tgisinternal and tgenabled in ('O', 'A')"
        )
    )
    found = set()
    for (kind,) in rows:
        for op, bit in _PG_EVENTS.items():
            if kind & _PG_BEFORE and kind & bit:
                found.add(op)
    return found


def _probe(engine: Engine, op: str) -> str:
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            if conn.dialect.name == "postgresql":
                conn.execute(text("set local lock_timeout = '2s'"))
            conn.execute(text(_PROBES[op]))
        except DBAPIError as exc:
            message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            return "refused" if "append-only" in message else f"untested: {message}"
        finally:
            tx.rollback()
    return "allowed"
