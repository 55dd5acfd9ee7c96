"""Partition leases: how several pipelines share the work with no account evaluated by two
at a time.

Accounts hash into `PARTITIONS` partitions (`tables.partition_of`, stored on every signal
and firing as `part`). Every running pipeline is a member (a row in `pipeline_members`,
renewed every `renew_every`); the live members, in the order they started, share the
partitions round-robin, and each takes the leases of its share in `pipeline_partitions`
(free, expired or already its own), renews them, and hands over those no longer in its
share. A member that stops renewing (killed, cut off) drops out of the live set after
`ttl`, and its leases expire at the same time: the others take them over.

Leases decide who *reads* a partition's pending rows. What makes an evaluation count only
once is the fence: `fence()` runs inside the evaluation's commit, locks the lease rows of
the batch (`FOR UPDATE` on PostgreSQL) and refuses the commit unless this member still
holds every one of them. A pipeline that paused past its lease (a long GC, a frozen VM)
and lost a partition to another therefore commits nothing for it, and the other pipeline,
whose claim skips rows locked by a commit in flight (`SKIP LOCKED`), reads the rows only
after that commit is over: a signal's evaluation commits exactly once.

On SQLite (one machine, one writer at a time) the first live member holds every partition
and the others wait as stand-ins.

Times come from the members' clocks (injectable for tests), which must agree to well
within `ttl`, as NTP keeps them; the fence does not depend on them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine

from csautomation.errors import CsAutomationError
from csautomation.store.engine import table, upsert
from csautomation.store.tables import PARTITIONS, PipelineMemberRow, PipelinePartitionRow

__all__ = [
    "PARTITIONS",
    "RENEW_EVERY",
    "TTL",
    "LeaseLostError",
    "Partitions",
    "member_id",
    "share",
]

Clock = Callable[[], datetime]
TTL = timedelta(seconds=10)
RENEW_EVERY = timedelta(seconds=2)


class LeaseLostError(CsAutomationError):
    """A pass's partitions moved to another pipeline before its commit: nothing of it was
    committed, and the new holder evaluates its signals."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def member_id() -> str:
    """host:pid:random, unique per process start, at most 64 characters."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def share(members: list[str], me: str, single: bool, count: int = PARTITIONS) -> frozenset[int]:
    """The partitions `me` should hold among the live `members` (in their start order)."""
    if me not in members:
        return frozenset()
    index = members.index(me)
    if single:
        return frozenset(range(count)) if index == 0 else frozenset()
    return frozenset(range(index, count, len(members)))


class Partitions:
    """This pipeline's leases. `refresh()` is called by the pass that reads and evaluates
    (one thread); `held` may be read by the dispatch loop."""

    def __init__(
        self,
        engine: Engine,
        member: str | None = None,
        ttl: timedelta = TTL,
        renew_every: timedelta = RENEW_EVERY,
        clock: Clock = utc_now,
        single: bool | None = None,
    ) -> None:
        self.engine = engine
        self.member = member or member_id()
        self.ttl = ttl
        self.renew_every = min(renew_every, ttl / 2)
        self.clock = clock
        self.single = engine.dialect.name == "sqlite" if single is None else single
        self.held: frozenset[int] = frozenset()
        self.members = 0  # live members at the last renewal
        self._renewed: datetime | None = None
        self._seeded = False

    def due(self) -> bool:
        return self._renewed is None or self.clock() - self._renewed >= self.renew_every

    def refresh(self, force: bool = False) -> frozenset[int]:
        """Renew membership and leases when due (or `force`d); the partitions held now."""
        if not (force or self.due()):
            return self.held
        now = self.clock().astimezone(UTC)  # SQLite compares them as text: one zone
        try:
            with self.engine.begin() as conn:
                if not self._seeded:
                    self._seed(conn)
                members = self._members(conn, now)
                wanted = share(members, self.member, self.single)
                self.held = self._claim(conn, wanted, now)
                self.members = len(members)
        except Exception:
            self.forget()  # a renewal that failed: hold nothing until one succeeds
            raise
        self._renewed = now
        return self.held

    def _seed(self, conn: Connection) -> None:
        t = table(PipelinePartitionRow)
        rows = [{"part": p, "epoch": 0} for p in range(PARTITIONS)]
        conn.execute(upsert(conn, t).values(rows).on_conflict_do_nothing())
        self._seeded = True

    def _members(self, conn: Connection, now: datetime) -> list[str]:
        """Renew this member; drop long-dead ones; the live ones in start order."""
        t = table(PipelineMemberRow)
        stmt = upsert(conn, t).values(id=self.member, started_at=now, seen_at=now)
        conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.id], set_={"seen_at": now}))
        conn.execute(delete(t).where(t.c.seen_at < now - 3 * self.ttl))
        rows = conn.execute(
            select(t.c.id).where(t.c.seen_at >= now - self.ttl).order_by(t.c.started_at, t.c.id)
        )
        return list(rows.scalars())

    def _claim(self, conn: Connection, wanted: frozenset[int], now: datetime) -> frozenset[int]:
        t = table(PipelinePartitionRow)
        # hand over what is no longer ours at once: its new holder need not wait for expiry
        conn.execute(
            update(t)
            .where(t.c.holder == self.member, t.c.part.not_in(wanted or {-1}))
            .values(holder=None, expires_at=None)
        )
        if not wanted:
            return frozenset()
        claimable = and_(
            t.c.part.in_(wanted),
            or_(t.c.holder == self.member, t.c.holder.is_(None), t.c.expires_at < now),
        )
        # a lease row locked by its holder's commit in flight is skipped, not waited for
        found = conn.execute(
            select(t.c.part, t.c.holder).where(claimable).with_for_update(skip_locked=True)
        ).all()
        mine = [p for p, holder in found if holder == self.member]
        taken = [p for p, holder in found if holder != self.member]
        expires = now + self.ttl
        if mine:
            conn.execute(update(t).where(t.c.part.in_(mine)).values(expires_at=expires))
        if taken:
            conn.execute(
                update(t)
                .where(t.c.part.in_(taken))
                .values(holder=self.member, expires_at=expires, epoch=t.c.epoch + 1)
            )
        return frozenset(mine) | frozenset(taken)

    def fence(self, conn: Connection, parts: Collection[int]) -> None:
        """Inside a commit: lock the leases of `parts` and raise `LeaseLostError` unless
        this member holds them all."""
        wanted = set(parts)
        if not wanted:
            return
        t = table(PipelinePartitionRow)
        held = set(
            conn.execute(
                select(t.c.part)
                .where(t.c.part.in_(wanted), t.c.holder == self.member)
                .with_for_update()
            ).scalars()
        )
        if lost := wanted - held:
            self.forget()
            raise LeaseLostError(
                f"partition(s) {', '.join(map(str, sorted(lost)))} moved to another pipeline"
            )

    def forget(self) -> None:
        """Hold nothing until the next renewal (forced at the next pass)."""
        self.held = frozenset()
        self._renewed = None

    def release(self) -> None:
        """A clean stop: hand every lease over and leave, so the others need not wait."""
        with self.engine.begin() as conn:
            t = table(PipelinePartitionRow)
            conn.execute(
                update(t).where(t.c.holder == self.member).values(holder=None, expires_at=None)
            )
            m = table(PipelineMemberRow)
            conn.execute(delete(m).where(m.c.id == self.member))
        self.forget()
