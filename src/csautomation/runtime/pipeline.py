"""From stored signals to started workflows: evaluate, then dispatch, both from outboxes.

`Pipeline.run_once()` evaluates every pending signal (grouped per account: one fact
derivation however many signals arrived) and dispatches every undispatched firing. It is
safe to run again at any point, by this process after a crash or by another process:
firings are unique per rule, account and cooldown window, workflow ids are deterministic,
and rows are marked done only after their work is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from csautomation.dispatcher import QUEUES, Firing, UnknownPlaybookError, plan, start
from csautomation.facts.model import Signal
from csautomation.playbooks.spec import Playbook
from csautomation.rules.runtime import Match, RuleRuntime
from csautomation.store.outbox import (
    PendingSignal,
    RunStart,
    commit_evaluation,
    index_runs,
    mark_dispatched,
    pending_signals,
    undispatched_firings,
)
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow

log = logging.getLogger(__name__)


class _BatchCooldowns:
    """A pass's view of cooldowns: the store's firings plus this pass's, written at the end."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.fired: dict[tuple[str, str], Match] = {}

    def last_fired(self, rule_id: str, account_id: str) -> datetime | None:
        mine = self.fired.get((rule_id, account_id))
        return mine.at if mine is not None else self.store.last_fired(rule_id, account_id)

    def record(self, match: Match) -> None:
        self.fired[(match.rule_id, match.account_id)] = match

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "rule_id": f.rule_id,
                "rule_version": f.rule_version,
                "account_id": f.account_id,
                "window": f.window,
                "priority": f.priority,
                "fired_at": f.at,
                "explain": f.explain,
                "actions": list(f.actions),
            }
            for f in map(Firing.from_match, self.fired.values())
        ]


@dataclass
class Counts:
    evaluated: int = 0
    fired: int = 0
    dispatched: int = 0
    started: int = 0


class Pipeline:
    def __init__(
        self,
        store: Store,
        runtime: RuleRuntime,
        playbooks: Mapping[str, Playbook],
        client: Client,
        queues: Mapping[str, str] = QUEUES,
        time_scale: float = 1.0,
        batch: int = 50,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.playbooks = playbooks
        self.client = client
        self.queues = queues
        self.time_scale = time_scale
        self.batch = batch
        self.counts = Counts()
        self.wake = asyncio.Event()

    def add_signal(self, signal: Signal) -> bool:
        """Store durably, then wake the loop; False for a duplicate idempotency key."""
        fresh = self.store.add_signal(signal)
        self.wake.set()
        return fresh

    # evaluate ---------------------------------------------------------------------------
    def evaluate_pending(self) -> int:
        """Evaluate a batch of stored signals not yet evaluated; returns how many were.

        The firings and the "evaluated" marks of the batch commit in one transaction, so a
        crash leaves either both or neither: the batch is then simply evaluated again.
        """
        pending = pending_signals(self.store, self.batch)
        if not pending:
            return 0
        by_account: dict[str, list[PendingSignal]] = defaultdict(list)
        for p in pending:
            by_account[p.signal.account_id].append(p)
        batch = _BatchCooldowns(self.store)
        for account_id, items in by_account.items():
            self._evaluate_account(account_id, items, batch)
        commit_evaluation(self.store, batch.rows(), [p.row_id for p in pending], datetime.now(UTC))
        self.counts.evaluated += len(pending)
        self.counts.fired += len(batch.fired)
        return len(pending)

    def _evaluate_account(
        self, account_id: str, items: list[PendingSignal], batch: _BatchCooldowns
    ) -> None:
        account = self.store.account(account_id)
        if account is None:
            # kept, and visible in the signals table; the quarantine comes with ingestion
            log.warning(
                "%d signal(s) for unknown account %s kept but not evaluated",
                len(items),
                account_id,
            )
            return
        # the newest signal's time: the same batch always evaluates at the same moment
        at = max(p.signal.occurred_at for p in items)
        triggers = {p.signal.type.value for p in items}
        history = self.store.signals_for(account_id)
        self.runtime.evaluate_account(account, history, at, triggers, cooldowns=batch)

    # dispatch ---------------------------------------------------------------------------
    async def dispatch_pending(self) -> int:
        rows = await asyncio.to_thread(undispatched_firings, self.store)
        if not rows:
            return 0
        # starts are network-bound: keep many in flight, most urgent first
        sem = asyncio.Semaphore(64)

        async def one(row: RuleFiringRow) -> None:
            async with sem:
                await self._dispatch(row)

        await asyncio.gather(*(one(r) for r in rows))
        return len(rows)

    async def _dispatch(self, row: RuleFiringRow) -> None:
        assert row.id is not None
        firing = Firing(
            rule_id=row.rule_id,
            rule_version=row.rule_version,
            account_id=row.account_id,
            window=row.window,
            priority=row.priority,
            at=row.fired_at,
            actions=tuple(row.actions),
            explain=row.explain,
            id=row.id,
        )
        try:
            planned = plan(firing, self.playbooks, self.queues, self.time_scale)
        except UnknownPlaybookError as exc:  # stays in the outbox until the playbook exists
            log.error("firing %d not dispatched: %s", row.id, exc)
            return
        runs = [
            RunStart(
                workflow_id=p.workflow_id,
                run_id=None,
                kind=p.kind,
                rule_id=row.rule_id,
                playbook_id=p.playbook_id,
                playbook_version=p.playbook_version,
                account_id=row.account_id,
                priority=row.priority,
                task_queue=p.task_queue,
            )
            for p in planned
        ]
        # index first: a run that finishes at once then always finds its row to close
        await asyncio.to_thread(index_runs, self.store, row.id, runs)
        started = [await start(self.client, p) for p in planned]
        runs = [replace(r, run_id=s.run_id) for r, s in zip(runs, started, strict=True)]
        await asyncio.to_thread(mark_dispatched, self.store, row.id, runs, datetime.now(UTC))
        self.counts.dispatched += 1
        self.counts.started += sum(1 for s in started if s.run_id is not None)

    # loop -------------------------------------------------------------------------------
    async def run_once(self) -> tuple[int, int]:
        evaluated = await asyncio.to_thread(self.evaluate_pending)
        dispatched = await self.dispatch_pending()
        return evaluated, dispatched

    async def run_forever(self, poll: float = 1.0) -> None:
        """Drain both outboxes whenever woken (a signal stored by this process) or every
        `poll` seconds (signals stored by other processes)."""
        while True:
            self.wake.clear()
            try:
                evaluated, dispatched = await self.run_once()
            except Exception:  # a process edge: log, keep the rows, try again
                log.exception("pipeline pass failed; retrying")
                evaluated = dispatched = 0
                await asyncio.sleep(poll)
            if evaluated or dispatched:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=poll)
