"""From stored signals to started workflows: evaluate, then dispatch, both from outboxes.

`Pipeline.run_once()` evaluates every pending signal (grouped per account: one fact
derivation however many signals arrived) and dispatches every undispatched firing. It is
safe to run again at any point, by this process after a crash or by another process:
firings are unique per rule, account and cooldown window, workflow ids are deterministic,
and rows are marked done only after their work is durable.

`run_forever()` runs the two arrows as two loops, so that evaluation never waits for
workflow starts in flight, and each dispatch pass writes its runs index and its marks in
one transaction each, whatever the number of firings it carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from temporalio.client import Client

from csautomation import metrics
from csautomation.facts.model import Account, Signal
from csautomation.pipeline.cooldowns import BatchCooldowns
from csautomation.pipeline.dispatch import (
    QUEUES,
    Firing,
    Planned,
    UnknownPlaybookError,
    plan,
    start,
)
from csautomation.pipeline.holding import hold_failed, hold_unknown
from csautomation.pipeline.reasons import render_reasons
from csautomation.playbooks.spec import Playbook
from csautomation.rules.runtime import RuleRuntime, ToEvaluate
from csautomation.store.facts import FactsReader, failure_reason
from csautomation.store.facts_snapshots import keep
from csautomation.store.outbox import (
    PendingSignal,
    RunStart,
    commit_evaluation,
    index_firings,
    mark_firings,
    pending_signals,
    undispatched_firings,
)
from csautomation.store.partitions import PARTITIONS, LeaseLostError, Partitions
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow

log = logging.getLogger(__name__)
BACKOFF_CAP = 60.0  # seconds between attempts of a pass that keeps failing, at most


class PlaybookSource(Protocol):
    """Playbooks that change while the pipeline runs (`live.LiveConfiguration`)."""

    @property
    def playbooks(self) -> Mapping[str, Playbook]: ...

    def reload_if_changed(self, force: bool = False) -> bool: ...


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
        playbooks: Mapping[str, Playbook] | PlaybookSource,
        client: Client,
        queues: Mapping[str, str] = QUEUES,
        time_scale: float = 1.0,
        batch: int = 500,
        facts: FactsReader | None = None,
        partitions: Partitions | None = None,
    ) -> None:
        self.store = store
        # None: this pipeline evaluates every partition, with no leases (one process
        # alone: `csauto dev`, the demo); `csauto pipeline` shares them with its peers
        self.partitions = partitions
        self.runtime = runtime
        self._playbooks = playbooks
        self.client = client
        self.queues = queues
        self.time_scale = time_scale
        self.batch = batch
        # share it with the activities in one process: they then read the facts derived here
        self.facts = facts or FactsReader(store, runtime.model)
        self.counts = Counts()
        self.wake = asyncio.Event()  # signals stored
        self._fired = asyncio.Event()  # firings committed

    @property
    def playbooks(self) -> Mapping[str, Playbook]:
        """The playbooks served now: a source's last good set, read at each dispatch."""
        source = self._playbooks
        return source if isinstance(source, Mapping) else source.playbooks

    def add_signal(self, signal: Signal) -> bool:
        """Store durably, then wake the loop; False for a duplicate idempotency key."""
        fresh = self.store.add_signal(signal)
        self.wake.set()
        return fresh

    def add_signals(self, signals: Sequence[Signal]) -> set[str]:
        """Store many durably in one transaction, then wake the loop once; returns the
        idempotency keys that were new (a batch that arrives at once: a pull, a POST)."""
        fresh = self.store.store_signals(signals)
        self.wake.set()
        return fresh

    # evaluate ---------------------------------------------------------------------------
    def evaluate_pending(self) -> int:
        """Evaluate a batch of stored signals not yet evaluated; returns how many were.

        The firings and the "evaluated" marks of the batch commit in one transaction, so a
        crash leaves either both or neither: the batch is then simply evaluated again.
        No row can stop the pass: a stored row that is not a valid signal, and the pending
        signals of an account whose facts cannot be derived or whose rules cannot be
        evaluated, are held in the quarantine with the reason (marked evaluated: they come
        back with `csauto quarantine retry`), and the other accounts are evaluated.
        """
        began = time.perf_counter()
        # looked at on every pass, signals or not, so an edit is picked up (and a broken
        # one reported) while the process idles; the runtime looks at most every few seconds
        self.runtime.reload_if_changed()
        parts = None if self.partitions is None else self._renew()
        pending = pending_signals(self.store, self.batch, parts)
        if not pending:
            return 0
        invalid = [p for p in pending if p.problem]
        by_account: dict[str, list[PendingSignal]] = defaultdict(list)
        for p in pending:
            if not p.problem:
                by_account[p.signal.account_id].append(p)
        batch = BatchCooldowns(self.store, by_account)
        accounts = self.store.accounts(by_account)
        unknown = [p for a, items in by_account.items() if a not in accounts for p in items]
        if unknown:
            hold_unknown(self.store, unknown)
        known = [(accounts[a], items) for a, items in by_account.items() if a in accounts]
        failed = self._evaluate(known, batch)
        held = [(p, f"the stored signal is not valid: {p.problem}") for p in invalid]
        held += [(p, why) for _, items in known for p in items if (why := failed.get(p.row_id))]
        if held:  # kept before the commit: a crash between the two holds them once more
            hold_failed(self.store, held)
        fence, by = None, None
        if self.partitions is not None:
            leases, batch_parts = self.partitions, {p.part for p in pending}
            fence, by = (lambda conn: leases.fence(conn, batch_parts)), leases.member
        try:
            commit_evaluation(
                self.store,
                batch.rows(),
                [p.row_id for p in pending],
                datetime.now(UTC),
                batch.rules(),
                fence=fence,
                by=by,
            )
        except LeaseLostError as exc:  # the new holder evaluates them: nothing committed
            log.info("pass of %d signals not committed: %s", len(pending), exc)
            return 0
        if batch.fired:
            self._keep_facts({account_id for _, account_id in batch.fired})
        self.counts.evaluated += len(pending) - len(held)
        metrics.PIPELINE_EVALUATED.inc(len(pending) - len(held))
        metrics.PIPELINE_PASS.labels("evaluate").observe(time.perf_counter() - began)
        self.counts.fired += len(batch.fired)
        log.debug(
            "evaluated %d signals of %d accounts in %.0f ms; %d fired, %d held",
            len(pending),
            len(by_account),
            (time.perf_counter() - began) * 1e3,
            len(batch.fired),
            len(held),
        )
        return len(pending)

    def _keep_facts(self, account_ids: set[str]) -> None:
        """The fired accounts' day records, for the worker processes' readers, whose
        playbooks read them next (store/facts_snapshots.py). A cache: a failed write is
        logged and costs them a derivation; the firings are committed already."""
        try:
            keep(self.store.engine, self.facts.snapshots(account_ids))
        except Exception as exc:
            log.warning("facts of %d accounts not kept: %s", len(account_ids), failure_reason(exc))

    def _renew(self) -> frozenset[int]:
        """This pipeline's partitions, renewed when due; none while the store fails."""
        assert self.partitions is not None
        before = self.partitions.held
        held = self.partitions.refresh()
        if held != before:
            log.info(
                "pipeline %s holds %d of %d partitions (%d pipeline(s) running)",
                self.partitions.member,
                len(held),
                PARTITIONS,
                self.partitions.members,
            )
        metrics.PIPELINE_PARTITIONS.set(len(held))
        return held

    def _evaluate(
        self, known: Sequence[tuple[Account, list[PendingSignal]]], batch: BatchCooldowns
    ) -> dict[int, str]:
        """Derive and evaluate each account at its newest signal's time (the same batch
        always evaluates alike); returns why, by signal row id, for the signals of the
        accounts that failed. Reading the store is not isolated: its failures fail the pass."""
        moments = [max(p.signal.occurred_at for p in items) for _, items in known]
        records = self.facts.records_or_errors(  # the signals up to that moment count
            [(account, at) for (account, _), at in zip(known, moments, strict=True)],
            self.runtime.derived,
        )
        failed: dict[int, str] = {}
        todo: list[tuple[Account, list[PendingSignal]]] = []
        asks: list[ToEvaluate] = []
        for (account, items), at, record in zip(known, moments, records, strict=True):
            if isinstance(record, Exception):
                failed.update(self._facts_failed(account, items, at, record))
                continue
            batch.note_health(account.id, record)
            todo.append((account, items))
            asks.append(ToEvaluate(account.id, record, at, {p.signal.type.value for p in items}))
        # the pass's records asserted into durable_rules together (RuleRuntime.evaluate_records)
        results = self.runtime.evaluate_records(asks, cooldowns=batch)
        for (account, items), result in zip(todo, results, strict=True):
            if isinstance(result, Exception):  # pure rule code over this record: hold it
                batch.forget(account.id)  # what it matched before failing does not fire
                why = (
                    f"rules cannot be evaluated for account {account.id}: {failure_reason(result)}"
                )
                log.error("%s; %d signal(s) quarantined", why, len(items))
                failed.update((p.row_id, why) for p in items)
        return failed

    def _facts_failed(
        self, account: Account, items: Sequence[PendingSignal], as_of: datetime, exc: Exception
    ) -> dict[int, str]:
        """Why each pending signal of an account whose facts cannot be derived is held:
        the signals the facts cannot be derived from even alone are named as the cause."""
        culprits = self.facts.culprits(account, [p.signal for p in items], as_of)
        log.error(
            "facts cannot be computed for account %s: %s; %d signal(s) quarantined",
            account.id,
            failure_reason(exc),
            len(items),
            extra={"account_id": account.id},
        )
        out = {}
        for p in items:
            own = culprits.get(p.signal.idempotency_key)
            out[p.row_id] = (
                f"facts cannot be computed from this signal: {failure_reason(own)}"
                if own is not None
                else f"facts cannot be computed for account {account.id}: {failure_reason(exc)}"
            )
        return out

    # dispatch ---------------------------------------------------------------------------
    @staticmethod
    def _sources(plans: Iterable[Planned]) -> dict[str, tuple[str, dict[str, Any]]]:
        """The playbooks these runs start, at their versions (for the decision ledger), as
        the runs get them: the loaded ones, and the one-step playbooks of rules' own
        create_task actions, which are in no file to show or compare them by later."""
        return {
            p.playbook_version: (
                p.playbook_id,
                p.arg.playbook.model_dump(mode="json", by_alias=True),
            )
            for p in plans
            if p.kind == "playbook"
        }

    async def dispatch_pending(self) -> int:
        """Start the workflows of every undispatched firing: index their runs (one
        transaction), start them, most urgent first and many in flight, then record the
        run ids and close the firings (one transaction). Returns how many were dispatched."""
        began = time.perf_counter()
        rows = await asyncio.to_thread(self._undispatched)
        playbooks = self.playbooks  # one set for the whole pass: runs and ledger agree
        planned: dict[int, tuple[list[Planned], list[RunStart]]] = {}
        for row in rows:
            assert row.id is not None
            try:
                firing = render_reasons(_firing(row), self.store, self.facts)
                plans = plan(firing, playbooks, self.queues, self.time_scale)
            except UnknownPlaybookError as exc:  # stays in the outbox until the playbook exists
                log.error("firing %d not dispatched: %s", row.id, exc)
                continue
            planned[row.id] = (plans, [_run_start(row, p) for p in plans])
        if not planned:
            return 0
        # index first: a run that finishes at once then always finds its row to close
        batch = {fid: runs for fid, (_, runs) in planned.items()}
        await asyncio.to_thread(
            index_firings,
            self.store,
            batch,
            self._sources(p for ps, _ in planned.values() for p in ps),
        )
        sem = asyncio.Semaphore(64)  # starts are network-bound: keep many in flight

        async def one(plans: list[Planned], runs: list[RunStart]) -> list[RunStart]:
            async with sem:
                started = [await start(self.client, p) for p in plans]
            return [replace(r, run_id=s.run_id) for r, s in zip(runs, started, strict=True)]

        done = await asyncio.gather(*(one(plans, runs) for plans, runs in planned.values()))
        await asyncio.to_thread(
            mark_firings, self.store, dict(zip(planned, done, strict=True)), datetime.now(UTC)
        )
        log.debug(
            "started the workflows of %d firings in %.0f ms",
            len(done),
            (time.perf_counter() - began) * 1e3,
        )
        self.counts.dispatched += len(done)
        metrics.PIPELINE_DISPATCHED.inc(len(done))
        metrics.PIPELINE_PASS.labels("dispatch").observe(time.perf_counter() - began)
        self.counts.started += sum(1 for runs in done for r in runs if r.run_id is not None)
        return len(done)

    def _undispatched(self) -> list[RuleFiringRow]:
        source = self._playbooks
        if not isinstance(source, Mapping):
            source.reload_if_changed()  # the firings of sweeps too start the new versions
        parts = None if self.partitions is None else self.partitions.held
        return undispatched_firings(self.store, parts=parts)

    # loop -------------------------------------------------------------------------------
    async def run_once(self) -> tuple[int, int]:
        evaluated = await asyncio.to_thread(self.evaluate_pending)
        dispatched = await self.dispatch_pending()
        return evaluated, dispatched

    async def run_forever(self, poll: float = 1.0) -> None:
        """Drain both outboxes whenever woken (a signal stored by this process, a firing
        committed by its evaluation) or every `poll` seconds (rows written by other
        processes), evaluation and dispatch each in its own loop."""
        try:
            await asyncio.gather(
                self._loop(self.evaluate_pending_async, self.wake, self._fired, poll),
                self._loop(self.dispatch_pending, self._fired, None, poll),
            )
        finally:
            if self.partitions is not None:  # a clean stop hands its partitions over now
                with contextlib.suppress(Exception):
                    self.partitions.release()

    async def evaluate_pending_async(self) -> int:
        return await asyncio.to_thread(self.evaluate_pending)

    @staticmethod
    async def _loop(
        step: Callable[[], Awaitable[int]],
        wake: asyncio.Event,
        then: asyncio.Event | None,
        poll: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        failures = 0
        while True:
            wake.clear()
            try:
                n = await step()
            except Exception as exc:  # a process edge: log, keep the rows, try again later
                failures += 1
                delay = backoff(failures, poll)
                log.error(
                    "pipeline pass failed (%d in a row); retrying in %.1f s: %s",
                    failures,
                    delay,
                    failure_reason(exc),
                    exc_info=failures == 1,  # the traceback once, not on every retry
                )
                # the step's name says which: evaluate_pending_async, dispatch_pending
                metrics.PIPELINE_ERRORS.labels(step.__name__.split("_")[0]).inc()
                await sleep(delay)
                continue
            failures = 0
            if n:
                if then is not None:
                    then.set()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll)


def backoff(failures: int, poll: float, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after this many passes failed in a row: doubling from the poll
    interval, capped, so a store that is down is not hammered at the poll rate."""
    return min(cap, max(poll, 0.05) * 2.0 ** min(failures - 1, 30))


def _firing(row: RuleFiringRow) -> Firing:
    return Firing(
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


def _run_start(row: RuleFiringRow, p: Planned) -> RunStart:
    return RunStart(
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
