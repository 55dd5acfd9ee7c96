"""The scheduler's own tables: the leader's lease and the claimed run keys.

APScheduler keeps its job store (next run times) in `apscheduler_jobs`, a table it
creates itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from csautomation.store.tables import utcnow

JOBS_TABLE = "apscheduler_jobs"


class SchedulerLeaseRow(SQLModel, table=True):
    """Who leads: taken when free or expired, renewed by its holder. `epoch` grows on
    every takeover, so work claimed under an older epoch is told apart."""

    __tablename__ = "scheduler_leases"
    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=200)
    epoch: int = 1
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    acquired_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    renewed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class SchedulerRunRow(SQLModel, table=True):
    """One row per run key (job and scheduled fire time, to the second): the unique
    constraint is what makes a run happen once, whoever leads."""

    __tablename__ = "scheduler_runs"
    __table_args__ = (UniqueConstraint("job_id", "fire_time"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=200, index=True)
    fire_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    epoch: int
    holder: str = Field(max_length=200)
    claimed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    status: str = Field(default="running", max_length=16)  # running, done, failed
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


TABLES = [SchedulerLeaseRow.__table__, SchedulerRunRow.__table__]  # type: ignore[attr-defined]


def create_tables(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=TABLES)
