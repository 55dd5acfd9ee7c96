"""Group commit: the signals of every request waiting at the same moment are stored in one
transaction, and each request is answered only after that transaction has committed.

A durable commit costs a disk flush (SQLite WAL with synchronous=FULL, PostgreSQL's WAL
fsync), and a flush per request caps acceptance at the disk's flush rate. Requests that
arrive while a commit is in flight queue up and share the next one, so under load the
flushes are amortised over many signals while a lone request still commits at once (no
timer, no added latency). Acknowledging after the commit keeps invariant 1: a 202 means
the signal is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from csautomation.facts.model import Signal
from csautomation.store.repo import Store

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    signals: Sequence[Signal]
    done: asyncio.Future[list[bool]]


class SignalWriter:
    """`await writer.write(signals)` -> for each signal, whether it was new (False: its
    idempotency key was already stored, now or by an earlier delivery)."""

    def __init__(
        self,
        store: Store,
        on_stored: Callable[[], None] | None = None,
        max_group: int = 20_000,
    ) -> None:
        self.store = store
        self.on_stored = on_stored
        self.max_group = max_group
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # for the benchmark: signals per commit = accepted / commits

    async def write(self, signals: Sequence[Signal]) -> list[bool]:
        if not signals:
            return []
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(self._queue), name="signal-writer")
        assert self._queue is not None
        done: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(signals, done))
        return await done

    def notify(self) -> None:
        """Signals were stored another way (a re-processed quarantine item): wake up."""
        if self.on_stored is not None:
            self.on_stored()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, queue: asyncio.Queue[_Waiting]) -> None:
        while True:
            group = [await queue.get()]
            size = len(group[0].signals)
            while size < self.max_group and not queue.empty():
                item = queue.get_nowait()
                group.append(item)
                size += len(item.signals)
            try:
                fresh = await asyncio.to_thread(
                    self.store.store_signals, [s for w in group for s in w.signals]
                )
            except Exception as exc:  # each waiting request answers 503; nothing was stored
                log.exception("storing %d signal(s) failed", size)
                for w in group:
                    if not w.done.done():
                        w.done.set_exception(exc)
                continue
            self.commits += 1
            for w in group:
                if not w.done.done():
                    w.done.set_result(_claim(w.signals, fresh))
            if self.on_stored is not None:
                self.on_stored()


def _claim(signals: Sequence[Signal], fresh: set[str]) -> list[bool]:
    """New keys are claimed by their first occurrence in the group; later ones (a duplicate
    in the same batch or in another request of the group) are duplicates."""
    out = []
    for s in signals:
        key = s.idempotency_key
        out.append(key in fresh)
        fresh.discard(key)
    return out
