"""Leader election by a lease row, on SQLite and PostgreSQL alike.

One statement takes or renews the lease, in its own transaction:

    INSERT INTO scheduler_leases (name, holder, epoch, expires_at, ...) VALUES (...)
    ON CONFLICT (name) DO UPDATE SET holder = me, expires_at = now + ttl,
        epoch = CASE WHEN holder = me AND expires_at >= now THEN epoch ELSE epoch + 1 END
    WHERE holder = me OR expires_at < now
    RETURNING epoch

A row comes back only to the process that now holds the lease. The epoch grows on every
takeover (and when a holder comes back after its own lease lapsed), so whatever an older
holder still tries to claim is refused by `runs.claim`, which checks holder, epoch and
expiry in the same statement as its insert.

Times come from the caller's clock (injectable for tests): the processes' clocks must
agree to well within the lease's length, as NTP keeps them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.engine import Engine

from csautomation.store.engine import aware, table, upsert
from csautomation.store.scheduler_tables import SchedulerLeaseRow

Clock = Callable[[], datetime]

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=15)
RENEW_EVERY = timedelta(seconds=5)


def utc_now() -> datetime:
    return datetime.now(UTC)


def holder_id() -> str:
    """host:pid:random, unique per process start (a restarted pid is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseState:
    name: str
    holder: str
    epoch: int
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


class Lease:
    """This process's view of one named lease. Not thread-safe: one thread renews it;
    others may read `held()` and `epoch`."""

    def __init__(
        self,
        engine: Engine,
        name: str = LEASE_NAME,
        holder: str | None = None,
        ttl: timedelta = LEASE_TTL,
        clock: Clock = utc_now,
    ) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder or holder_id()
        self.ttl = ttl
        self.clock = clock
        self.epoch: int | None = None
        self.expires_at: datetime | None = None

    def acquire(self) -> bool:
        """Take the lease if it is free or expired, renew it if ours; True when held."""
        t = table(SchedulerLeaseRow)
        now = self.clock().astimezone(UTC)  # SQLite compares them as text: one zone
        expires = now + self.ttl
        with self.engine.begin() as conn:
            stmt = upsert(conn, t).values(
                name=self.name,
                holder=self.holder,
                epoch=1,
                expires_at=expires,
                acquired_at=now,
                renewed_at=now,
            )
            still_mine = and_(t.c.holder == self.holder, t.c.expires_at >= now)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.name],
                set_={
                    "holder": self.holder,
                    "epoch": case((still_mine, t.c.epoch), else_=t.c.epoch + 1),
                    "acquired_at": case((still_mine, t.c.acquired_at), else_=now),
                    "expires_at": expires,
                    "renewed_at": now,
                },
                where=or_(t.c.holder == self.holder, t.c.expires_at < now),
            ).returning(t.c.epoch)
            epoch = conn.execute(stmt).scalar()
        if epoch is None:
            self.epoch = self.expires_at = None
            return False
        self.epoch, self.expires_at = int(epoch), expires
        return True

    def held(self) -> bool:
        """Held by this process as far as it knows (its last renewal has not expired)."""
        return self.expires_at is not None and self.clock() < self.expires_at

    def release(self) -> None:
        """Hand the lease over at once (a clean stop): another process need not wait for
        it to expire."""
        if self.epoch is None:
            return
        t = table(SchedulerLeaseRow)
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.name == self.name, t.c.holder == self.holder, t.c.epoch == self.epoch)
                .values(expires_at=self.clock().astimezone(UTC) - timedelta(microseconds=1))
            )
        self.epoch = self.expires_at = None

    def forget(self) -> None:
        """Stop believing the lease is held (a renewal failed)."""
        self.epoch = self.expires_at = None


def current_lease(engine: Engine, name: str = LEASE_NAME) -> LeaseState | None:
    """The lease row as stored (live or not), or None before anyone took it."""
    t = table(SchedulerLeaseRow)
    with engine.connect() as conn:
        row = conn.execute(
            select(t.c.holder, t.c.epoch, t.c.expires_at).where(t.c.name == name)
        ).first()
    if row is None:
        return None
    return LeaseState(name, row.holder, int(row.epoch), aware(row.expires_at))
