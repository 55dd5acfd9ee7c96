"""Fact records kept in the store for other processes: the pipeline's, read by the workers.

A `csauto worker` process does not share the pipeline's `FactsReader`. Its first read of an
account's facts, a new playbook's goal check or its first task's template, read the whole
signal history and derived it again: one full history read per new run in every worker,
and 2 to 3 ms of the workers' CPU a signal at 10 signals/s (docs/benchmarks.md, "Playbooks").

So the pipeline keeps here the record of each account that fired, after the evaluation's
commit, and a `FactsReader` asked for a day's record it does not hold takes a kept one
derived from exactly the same inputs:
- the same day, the same signals (their count and newest row id, as the reader's own
  cache checks them);
- the same account row, health model and derivation code (the source of `facts/`),
  together as one digest;
- at least the rule-derived facts asked for.
Anything else is derived afresh. It is a cache: a lost or failed write costs a derivation,
never a wrong record.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, select
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

import csautomation.facts
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account
from csautomation.store.engine import prepared, table, upsert


class FactsSnapshotRow(SQLModel, table=True):
    __tablename__ = "facts_snapshots"
    account_id: str = Field(primary_key=True, max_length=128)
    day: date
    signals: int  # the account's signal count ...
    newest: int  # ... and newest row id when the record was derived
    inputs: str = Field(max_length=64)  # digest: account, health model, derivation code
    derived: list[str] = Field(sa_column=Column(JSON, nullable=False))
    record: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    kept_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass(frozen=True)
class Snapshot:
    account_id: str
    day: date
    version: tuple[int, int]
    inputs: str
    derived: frozenset[str]
    record: dict[str, Any]


@functools.cache
def _code() -> str:
    """A digest of the derivation's source: a kept record outlives the code that made it."""
    digest = hashlib.sha256()
    for path in sorted(Path(csautomation.facts.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def model_digest(model: HealthModel) -> str:
    """The health model and the derivation code, for `inputs_digest`."""
    return hashlib.sha256(f"{_code()}\0{model.model_dump_json()}".encode()).hexdigest()


def inputs_digest(account: Account, model_key: str) -> str:
    """What besides the day and the signals a record is derived from."""
    return hashlib.sha256(f"{model_key}\0{account.model_dump_json()}".encode()).hexdigest()


def keepable(record: dict[str, Any]) -> bool:
    """JSON keeps it as it is: no NaN or infinity (PostgreSQL's JSON refuses them)."""
    return all(not isinstance(v, float) or math.isfinite(v) for v in record.values())


def keep(engine: Engine, snapshots: Sequence[Snapshot]) -> None:
    """Keep these records, each replacing its account's (one transaction)."""
    if not snapshots:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "account_id": s.account_id,
            "day": s.day,
            "signals": s.version[0],
            "newest": s.version[1],
            "inputs": s.inputs,
            "derived": sorted(s.derived),
            "record": s.record,
            "kept_at": now,
        }
        for s in sorted(snapshots, key=lambda s: s.account_id)  # one lock order
    ]
    with engine.begin() as conn:
        conn.execute(prepared(conn, "facts_snapshots.keep", _upsert), rows)


def _upsert(conn: Any) -> Any:
    t = table(FactsSnapshotRow)
    stmt = upsert(conn, t)
    kept = ("day", "signals", "newest", "inputs", "derived", "record", "kept_at")
    return stmt.on_conflict_do_update(
        index_elements=[t.c.account_id], set_={c: stmt.excluded[c] for c in kept}
    )


def kept(engine: Engine, account_ids: Collection[str]) -> dict[str, Snapshot]:
    """The kept records of these accounts, in one query per 500."""
    t = table(FactsSnapshotRow)
    ids = sorted(set(account_ids))
    out: dict[str, Snapshot] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(select(t).where(t.c.account_id.in_(ids[start : start + 500])))
            for r in rows:
                out[r.account_id] = Snapshot(
                    r.account_id,
                    r.day,
                    (int(r.signals), int(r.newest)),
                    r.inputs,
                    frozenset(r.derived),
                    dict(r.record),
                )
    return out
