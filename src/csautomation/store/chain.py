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
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine

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


_LAST_HASH = select(LEDGER.c.hash).order_by(LEDGER.c.id.desc()).limit(1)


def last_hash(conn: Connection) -> str:
    found = conn.execute(_LAST_HASH).scalar()
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
    """One statement the database must refuse, and whether a trigger does."""

    operation: str
    ok: bool
    detail: str

    def render(self) -> str:
        return (
            f"{self.operation} refused" if self.ok else f"{self.operation} ALLOWED ({self.detail})"
        )


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
            "guards": [g.__dict__ for g in self.guards],
            "expected_head": self.expected_head,
            "expected_head_found": self.expected_head_found,
        }


def verify(engine: Engine, expected_head: str | None = None) -> Verification:
    """Walk the chain, then check the append-only triggers. Reads only."""
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
    result.guards = guards(engine)
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

REFUSAL = "decision_ledger is append-only"
# the triggers as the models and migrations make them (whitespace and case aside): a trigger
# with a WHEN, on some columns only, or with another body may let a statement through
_SQLITE_TRIGGER = re.compile(
    r"CREATE TRIGGER (IF NOT EXISTS )?\"?\w+\"? BEFORE (UPDATE|DELETE) ON \"?decision_ledger\"? "
    rf"BEGIN SELECT RAISE\(ABORT, '{REFUSAL}'\); END",
    re.IGNORECASE,
)
_PG_BODY = f"BEGIN RAISE EXCEPTION '{REFUSAL}'; END;"
_PG_EVENTS = {"UPDATE": 16, "DELETE": 8, "TRUNCATE": 32}  # pg_trigger.tgtype's bits
_PG_BEFORE = 2
NOT_REFUSING = "a trigger, but one that does not always refuse"


def guards(engine: Engine) -> list[Guard]:
    """UPDATE and DELETE (and TRUNCATE on PostgreSQL): does a trigger refuse each? Read
    from the database's catalog, so a store opened read-only can tell: the trigger must be
    there, enabled, unconditional, and its body the refusal."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            return _pg_guards(conn)
        return _sqlite_guards(conn)


def _sqlite_guards(conn: Connection) -> list[Guard]:
    rows = conn.execute(
        text(
            "select sql from sqlite_master where type = 'trigger' and tbl_name = 'decision_ledger'"
        )
    ).scalars()
    there: set[str] = set()
    refused: set[str] = set()
    for sql in rows:
        words = " ".join(str(sql).split())
        there.update(m.upper() for m in re.findall(r"BEFORE (UPDATE|DELETE)\b", words, re.I))
        if found := _SQLITE_TRIGGER.fullmatch(words):
            refused.add(found.group(2).upper())
    return [_guard(op, op in there, op in refused) for op in ("UPDATE", "DELETE")]


def _guard(op: str, there: bool, refused: bool, why: str = "") -> Guard:
    if refused and not why:
        return Guard(op, True, "refused by a trigger")
    if not there:
        return Guard(op, False, "no trigger")
    return Guard(op, False, why or NOT_REFUSING)


def _pg_guards(conn: Connection) -> list[Guard]:
    rows = conn.execute(
        text(
            "select t.tgtype, t.tgenabled, t.tgqual is null, cardinality(t.tgattr::int2[]),"
            " p.prosrc from pg_trigger t join pg_proc p on p.oid = t.tgfoid"
            " where t.tgrelid = 'decision_ledger'::regclass and not t.tgisinternal"
        )
    ).all()
    replica = conn.execute(
        text(
            "select count(*) from pg_db_role_setting "
            "where array_to_string(setconfig, ',') like '%session_replication_role=replica%'"
        )
    ).scalar()
    out = []
    for op, bit in _PG_EVENTS.items():
        mine = [r for r in rows if r[0] & _PG_BEFORE and r[0] & bit]
        refusing = [
            r
            for r in mine
            if r[1] in ("O", "A")
            and r[2]
            and (r[3] == 0 or op != "UPDATE")
            and " ".join(str(r[4]).split()).upper() == _PG_BODY.upper()
        ]
        why = ""
        if refusing and replica and not any(r[1] == "A" for r in refusing):
            why = "session_replication_role = replica is set for a role or database"
        out.append(_guard(op, bool(mine), bool(refusing), why))
    return out
