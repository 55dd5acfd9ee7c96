"""How many signals each push source (sources.yaml) has brought in, and when it last did:
one row per source, for `csauto sources status` and `/metrics`. What a source sent that
was held is the quarantine's (its `source` column); pulls are counted on their scheduler
runs.

The intake adds to these counts in memory and writes them at most once a second, after
the requests (`SourceTallies`): the signals' own transaction, the group commit, stays one
flush per group. A process stopped within that second leaves its last counts unwritten:
the signals themselves are stored; only this tally of them misses them."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, select
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from csautomation.store.engine import aware, table, upsert

log = logging.getLogger(__name__)


class SourceTallyRow(SQLModel, table=True):
    __tablename__ = "source_tallies"
    source: str = Field(primary_key=True, max_length=64)
    received: int = 0  # signals new to the store
    last_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass(frozen=True)
class Tallied:
    received: int
    last_at: datetime


def add_counts(engine: Engine, counts: dict[str, tuple[int, datetime]]) -> None:
    """Add to each source's count (committed when this returns)."""
    t = table(SourceTallyRow)
    with engine.begin() as conn:
        for source, (n, at) in sorted(counts.items()):
            stmt = upsert(conn, t).values(source=source[:64], received=n, last_at=at)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.c.source],
                    set_={"received": t.c.received + n, "last_at": stmt.excluded.last_at},
                )
            )


def tallies(engine: Engine) -> dict[str, Tallied]:
    t = table(SourceTallyRow)
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.source, t.c.received, t.c.last_at)).all()
    return {r.source: Tallied(int(r.received), aware(r.last_at)) for r in rows}


class SourceTallies:
    """Counts noted on the event loop, written on a worker thread at most every `every`
    seconds (at once after a quiet spell)."""

    def __init__(self, engine: Engine, every: float = 1.0) -> None:
        self.engine = engine
        self.every = every
        self._pending: dict[str, tuple[int, datetime]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self._last = 0.0  # monotonic time of the last write
        self._lock = threading.Lock()

    def note(self, source: str, received: int) -> None:
        if received <= 0:
            return
        now = datetime.now(UTC)
        with self._lock:
            n, _ = self._pending.get(source, (0, now))
            self._pending[source] = (n + received, now)
        self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (the old one closed with its timer)
            self._loop, self._timer, self._writing = loop, None, False
        if self._timer is not None or self._writing:
            return
        delay = max(0.0, self._last + self.every - time.monotonic())
        self._timer = loop.call_later(delay, self._write, loop)

    def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        self._writing = True
        future = loop.run_in_executor(None, add_counts, self.engine, batch)
        future.add_done_callback(lambda f: self._written(f, batch))

    def _written(
        self, future: asyncio.Future[None], batch: dict[str, tuple[int, datetime]]
    ) -> None:
        self._writing = False
        self._last = time.monotonic()
        if future.cancelled() or future.exception() is not None:
            log.warning(
                "source tallies not written (kept for the next write): %s",
                future.exception() if not future.cancelled() else "cancelled",
            )
            with self._lock:
                for source, (n, at) in batch.items():
                    m, later = self._pending.get(source, (0, at))
                    self._pending[source] = (n + m, max(at, later))
        if self._pending:
            self._schedule()

    def flush(self) -> None:
        """Write what is noted now (from any thread; for a clean stop, and tests)."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if batch:
            add_counts(self.engine, batch)
