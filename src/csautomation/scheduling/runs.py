"""Run keys: the fence that makes each scheduled run happen once, whoever leads.

A job run first claims its key (job id and scheduled fire time, to the second) with one
statement that inserts the key only while the claimant holds the lease, with the epoch it
believes it holds:

    INSERT INTO scheduler_runs (job_id, fire_time, epoch, holder, ...)
    SELECT :job, :fire, epoch, holder, ... FROM scheduler_leases
    WHERE name = :lease AND holder = :me AND epoch = :epoch AND expires_at > :now
    ON CONFLICT (job_id, fire_time) DO NOTHING

A second claim of the same key inserts nothing (the unique constraint), and so does a
deposed leader's (the lease check): the run is skipped. A claim is never taken back, so a
leader killed in the middle of a run leaves its key `running`; the next scheduled run
catches up (sweeps evaluate the current facts; pulls and completion sync read from their
cursors).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, and_, delete, func, literal, select, update
from sqlalchemy.engine import Engine

from csautomation.scheduling.leader import Lease
from csautomation.store.engine import aware, table, upsert
from csautomation.store.scheduler_tables import SchedulerLeaseRow, SchedulerRunRow


@dataclass(frozen=True)
class RunKey:
    job_id: str
    fire_time: datetime  # UTC, whole seconds

    @classmethod
    def of(cls, job_id: str, fire_time: datetime) -> RunKey:
        return cls(job_id, fire_time.astimezone(UTC).replace(microsecond=0))

    def __str__(self) -> str:
        return f"{self.job_id}@{self.fire_time.isoformat()}"


@dataclass(frozen=True)
class Run:
    job_id: str
    fire_time: datetime
    epoch: int
    holder: str
    claimed_at: datetime
    finished_at: datetime | None
    status: str
    result: dict[str, Any]


def claim(engine: Engine, key: RunKey, lease: Lease) -> bool:
    """Claim `key` for this lease holder; False when the key is taken or the lease is not
    (or no longer) held with the epoch this process knows."""
    if lease.epoch is None:
        return False
    runs, leases = table(SchedulerRunRow), table(SchedulerLeaseRow)
    now = lease.clock().astimezone(UTC)
    fenced = select(
        literal(key.job_id, String()),
        literal(key.fire_time, DateTime(timezone=True)),
        leases.c.epoch,
        leases.c.holder,
        literal(now, DateTime(timezone=True)),
        literal("running", String()),
        literal({}, JSON()),
    ).where(
        leases.c.name == lease.name,
        leases.c.holder == lease.holder,
        leases.c.epoch == literal(lease.epoch, Integer()),
        leases.c.expires_at > now,
    )
    with engine.begin() as conn:
        stmt = (
            upsert(conn, runs)
            .from_select(
                ["job_id", "fire_time", "epoch", "holder", "claimed_at", "status", "result"],
                fenced,
            )
            .on_conflict_do_nothing()
            .returning(runs.c.id)
        )
        return conn.execute(stmt).first() is not None


def finish(engine: Engine, key: RunKey, lease: Lease, status: str, result: dict[str, Any]) -> None:
    t = table(SchedulerRunRow)
    with engine.begin() as conn:
        conn.execute(
            update(t)
            .where(
                t.c.job_id == key.job_id,
                t.c.fire_time == key.fire_time,
                t.c.holder == lease.holder,
            )
            .values(status=status, result=result, finished_at=lease.clock().astimezone(UTC))
        )


def claimed(engine: Engine, key: RunKey) -> bool:
    t = table(SchedulerRunRow)
    with engine.connect() as conn:
        found = conn.execute(
            select(t.c.id).where(t.c.job_id == key.job_id, t.c.fire_time == key.fire_time)
        ).first()
    return found is not None


def runs(engine: Engine, job_id: str | None = None) -> list[Run]:
    """Claimed runs, oldest fire time first."""
    t = table(SchedulerRunRow)
    q = select(t).order_by(t.c.fire_time, t.c.job_id)
    if job_id is not None:
        q = q.where(t.c.job_id == job_id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return [_run(r) for r in rows]


def last_runs(engine: Engine) -> dict[str, Run]:
    """Each job's latest claimed run."""
    t = table(SchedulerRunRow)
    latest = (
        select(t.c.job_id, func.max(t.c.fire_time).label("fire_time"))
        .group_by(t.c.job_id)
        .subquery()
    )
    q = select(t).join(
        latest, and_(t.c.job_id == latest.c.job_id, t.c.fire_time == latest.c.fire_time)
    )
    with engine.connect() as conn:
        return {r.job_id: _run(r) for r in conn.execute(q).all()}


def _run(r: Any) -> Run:
    return Run(
        r.job_id,
        aware(r.fire_time),
        int(r.epoch),
        r.holder,
        aware(r.claimed_at),
        aware(r.finished_at) if r.finished_at else None,
        r.status,
        dict(r.result or {}),
    )


def prune(engine: Engine, before: datetime) -> int:
    """Forget run keys scheduled before `before` (they can no longer be claimed again:
    no scheduler looks that far back)."""
    t = table(SchedulerRunRow)
    with engine.begin() as conn:
        result = conn.execute(delete(t).where(t.c.fire_time < before.astimezone(UTC)))
    return int(result.rowcount or 0)
