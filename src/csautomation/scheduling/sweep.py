"""A sweep: scheduled rules evaluated over every account at once, in batch mode.

Each account's facts for the sweep's day (the whole UTC day, read at its end as `--as-of`
reads a day: facts/days.py) come from what the scheduler keeps between its sweeps
(scheduling/sweep_facts.py: histories as columns, only new rows read; records equal to
derive's), or else from the `FactsReader` the pipeline uses; the rules' conditions are then
evaluated over columns (`rules/batch.py`), and only the accounts a rule matched are
explained, and only theirs made into whole records. A
match inside the rule's cooldown for the account (its last firing in `rule_firings`) is
suppressed; the others enter the dispatch outbox in one transaction per chunk of
accounts, as the pipeline's evaluation pass writes them. Firings are unique per rule,
account and cooldown window, and a sweep run again at the same time finds its own firings
inside the cooldown: it adds nothing.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select

from csautomation.errors import ConfigError
from csautomation.facts.days import AsOf, utc_day
from csautomation.facts.derived import DerivedFact
from csautomation.facts.model import Account
from csautomation.pipeline import BatchCooldowns
from csautomation.rules.batch import BatchEvaluator
from csautomation.rules.explain import explain
from csautomation.rules.ir import CompiledRule
from csautomation.rules.runtime import SCHEDULE, Match, RuleRuntime, triggered
from csautomation.scheduling.sweep_facts import Facts, SweepFacts
from csautomation.store.engine import table
from csautomation.store.facts import FactsReader
from csautomation.store.outbox import commit_evaluation
from csautomation.store.repo import Store
from csautomation.store.tables import AccountRow

log = logging.getLogger(__name__)

CHUNK = 1000  # accounts per evaluation batch and outbox transaction


class SweepError(ConfigError):
    """A sweep was asked for a rule that does not exist, is disabled or has no schedule."""


@dataclass(frozen=True)
class SweepResult:
    rules: tuple[str, ...]
    at: datetime
    accounts: int  # evaluated
    matched: int  # (rule, account) pairs whose conditions held
    fired: int  # recorded into the dispatch outbox
    suppressed: int  # matched inside the rule's cooldown for the account
    unreadable: int = 0  # accounts whose facts cannot be computed (left out, logged)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rules"], out["at"] = list(self.rules), self.at.isoformat()
        return out

    def __str__(self) -> str:
        return (
            f"{', '.join(self.rules)} at {self.at.isoformat()}: {self.accounts} accounts "
            f"evaluated, {self.fired} fired, {self.suppressed} suppressed by cooldown"
        )


def scheduled_rules(runtime: RuleRuntime, rule_ids: Sequence[str]) -> list[CompiledRule]:
    """The enabled rules with a schedule among `rule_ids`, most urgent first."""
    ruleset = runtime.ruleset
    out = []
    for rule_id in rule_ids:
        rule = ruleset.by_id(rule_id)
        if rule is None:
            known = ", ".join(r.id for r in ruleset.rules if r.rule.trigger.schedule) or "none"
            raise SweepError(f"no rule '{rule_id}' (rules with a schedule: {known})")
        if not rule.rule.enabled:
            raise SweepError(f"rule '{rule_id}' is disabled")
        if not triggered(rule, SCHEDULE):
            raise SweepError(f"rule '{rule_id}' has no trigger.schedule; sweeps run those only")
        out.append(rule)
    return sorted(out, key=lambda r: (r.rank, r.id))


def sweep(
    store: Store,
    runtime: RuleRuntime,
    rule_ids: Sequence[str],
    at: datetime,
    facts: FactsReader | None = None,
    chunk: int = CHUNK,
    kept: SweepFacts | None = None,
) -> SweepResult:
    """Evaluate the rules over every account as of `at` (the sweep's scheduled time) and
    record their firings in the dispatch outbox; raise SweepError for a rule that cannot
    be swept. `kept`: the accounts and histories a scheduler keeps between its sweeps (read
    from the store, page by page, without it)."""
    with _old_objects_set_aside():
        return _sweep(store, runtime, rule_ids, at, facts, chunk, kept)


_aside = threading.Lock()
_sweeping = 0  # sweeps running now (of several rules at once)


@contextmanager
def _old_objects_set_aside() -> Iterator[None]:
    """The objects alive when the sweep starts (the kept accounts and histories: a million
    or more) out of the cyclic collector's reach until it ends. A sweep makes many objects,
    and each full collection they set off would traverse every old one again (most of a
    second for 100,000 accounts); new objects are still collected. When the last sweep
    ends, the old objects are returned to the collector, so none is kept from it for good."""
    global _sweeping
    with _aside:
        _sweeping += 1
        gc.freeze()
    try:
        yield
    finally:
        with _aside:
            _sweeping -= 1
            if not _sweeping:
                gc.unfreeze()


def _sweep(
    store: Store,
    runtime: RuleRuntime,
    rule_ids: Sequence[str],
    at: datetime,
    facts: FactsReader | None,
    chunk: int,
    kept: SweepFacts | None,
) -> SweepResult:
    runtime.reload_if_changed()
    rules = scheduled_rules(runtime, rule_ids)
    at = at.astimezone(UTC)
    reader: _Records = kept or facts or FactsReader(store, runtime.model)
    derived: dict[str, DerivedFact] = {d.key: d for r in rules for d in r.derived}
    evaluator = BatchEvaluator(rules)
    accounts = matched = fired = suppressed = 0
    unreadable = 0
    pages = kept.pages(chunk) if kept else _accounts(store, chunk)
    for every, (batch, known, positions) in _with_facts(reader, pages, at, derived):
        unreadable += len(every) - len(batch)
        masks = evaluator.evaluate(known.columns(positions, evaluator.keys))
        cooldowns = BatchCooldowns(store, [a.id for a in batch])
        for rule in rules:
            hits = np.flatnonzero(masks[rule.id]).tolist()
            records = known.records([positions[i] for i in hits])
            for i, record in zip(hits, records, strict=True):
                account = batch[i]
                matched += 1
                why = explain(rule, record)
                if not why.matched:  # both paths share one meaning; disagreement is a bug
                    log.error("batch matched %s but explain does not: %s", rule.id, record)
                last = cooldowns.last_fired(rule.id, account.id)
                if last is not None and at - last < rule.rule.cooldown:
                    suppressed += 1
                    continue
                cooldowns.note_health(account.id, record)
                cooldowns.record(Match(rule, account.id, at, record))
        fired += commit_evaluation(
            store, cooldowns.rows(), [], datetime.now(UTC), cooldowns.rules()
        )
        accounts += len(batch)
    result = SweepResult(
        tuple(r.id for r in rules), at, accounts, matched, fired, suppressed, unreadable
    )
    log.info("sweep %s", result)
    return result


class _Records(Protocol):
    def records_or_errors(
        self, wanted: Sequence[tuple[Account, AsOf]], derived: Sequence[DerivedFact] = ()
    ) -> list[dict[str, Any] | Exception]: ...


AHEAD = 2  # pages whose facts are derived ahead of the one evaluated, each on a thread


def _with_facts(
    reader: _Records, pages: Iterator[list[Account]], at: datetime, derived: dict[str, DerivedFact]
) -> Iterator[tuple[list[Account], tuple[list[Account], Facts, list[int]]]]:
    """Each page with its readable accounts and their facts (`_readable`). The kept facts
    are derived AHEAD pages ahead on threads: deriving is numpy's work on whole grids,
    which releases the GIL, and the pages' accounts do not depend on one another, so a
    second core derives while the first evaluates and writes."""
    wanted = tuple(derived.values())
    if not isinstance(reader, SweepFacts) or AHEAD < 1:
        for every in pages:
            yield every, _readable(reader, every, at, wanted)
        return
    with ThreadPoolExecutor(AHEAD, thread_name_prefix="sweep-facts") as pool:
        queued: deque[tuple[list[Account], Future[Any]]] = deque()
        for every in pages:
            queued.append((every, pool.submit(_readable, reader, every, at, wanted)))
            if len(queued) > AHEAD:
                first, facts = queued.popleft()
                yield first, facts.result()
        while queued:
            first, facts = queued.popleft()
            yield first, facts.result()


def _readable(
    reader: _Records, accounts: list[Account], at: datetime, derived: tuple[DerivedFact, ...]
) -> tuple[list[Account], Facts, list[int]]:
    """The accounts whose facts can be computed, their facts, and the positions of those
    among `accounts`: one account's bad history never stops a sweep (the pipeline holds
    its signals; the page says why)."""
    wanted = [(a, utc_day(at)) for a in accounts]
    if isinstance(reader, SweepFacts):
        facts, errors = reader.facts(wanted, derived)
    else:
        results = reader.records_or_errors(wanted, derived)
        errors = {i: r for i, r in enumerate(results) if isinstance(r, Exception)}
        facts = Facts.of([{} if isinstance(r, Exception) else r for r in results])
    for i, error in errors.items():
        account = accounts[i]
        log.warning(
            "sweep: facts of account %s cannot be computed: %s: %s",
            account.id,
            type(error).__name__,
            error,
            extra={"account_id": account.id},
        )
    positions = [i for i in range(len(accounts)) if i not in errors]
    return [accounts[i] for i in positions], facts, positions


def _accounts(store: Store, chunk: int) -> Iterator[list[Account]]:
    """Every account, in id order, `chunk` at a time (keyset pages: no long read)."""
    t = table(AccountRow)
    after = ""
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.id, t.c.data).where(t.c.id > after).order_by(t.c.id).limit(chunk)
            ).all()
        if not rows:
            return
        yield [Account.model_validate(data) for _, data in rows]
        after = rows[-1][0]
