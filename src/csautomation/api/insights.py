"""The numbers of the rule pages, computed in Python so the templates only lay them out:
weeks in UTC, firings per week, what a rule's playbook runs came to, and the health bands
of a person's accounts week by week.

Whose accounts a person sees here follows `auth.scope_of`: an admin every account, a
manager (director, vp) the accounts of their teams (an account's team is its owner's:
`escalation.policy.account_team`), a CSM or ops person the accounts they own.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from csautomation.api.auth import scope_of
from csautomation.escalation.people import People, Person
from csautomation.escalation.policy import account_team
from csautomation.facts.derive import derive
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal
from csautomation.store.facts import FactsReader, failure_reason
from csautomation.store.firings import RaisedEscalation, Run
from csautomation.store.repo import Store

log = logging.getLogger(__name__)

WEEKS = 12
BANDS = ("green", "yellow", "red")
UNKNOWN = "unknown"  # no health score: too little data, or facts that cannot be derived
GOAL_MET = "goal_met"  # the outcome a playbook run records when its goal held


@dataclass(frozen=True)
class Week:
    start: datetime  # Monday 00:00 UTC
    end: datetime  # the next Monday, or `now` for the current week
    label: str
    partial: bool


def weeks(now: datetime, n: int = WEEKS) -> list[Week]:
    """The last `n` weeks (Monday to Sunday, UTC), oldest first; the last one is the
    current week up to `now`, labelled as such."""
    now = now.astimezone(UTC)
    monday = datetime.combine(now.date() - timedelta(days=now.weekday()), time(), UTC)
    out = []
    for i in range(n - 1, -1, -1):
        start = monday - timedelta(weeks=i)
        label = f"{start:%d %b}".lstrip("0")
        out.append(
            Week(
                start=start,
                end=now if i == 0 else start + timedelta(weeks=1),
                label=f"{label} (so far)" if i == 0 else label,
                partial=i == 0,
            )
        )
    return out


def per_week(times: Iterable[datetime], span: Sequence[Week]) -> list[int]:
    """How many of `times` fall in each week (a week's end excluded, the current week's
    included: a firing at exactly `now` counts)."""
    counts = [0] * len(span)
    for t in times:
        for i, w in enumerate(span):
            if w.start <= t < w.end or (w.partial and t == w.end):
                counts[i] += 1
                break
    return counts


def all_accounts(store: Store) -> list[Account]:
    out: list[Account] = []
    after = ""
    while True:
        page = store.list_accounts(limit=1000, after=after)
        out.extend(page)
        if len(page) < 1000:
            return out
        after = page[-1].id


def visible_accounts(
    people: People, person: Person, accounts: Iterable[Account]
) -> set[str] | None:
    """The ids of the accounts whose firings and health `person` sees; None: every one."""
    scope = scope_of(person)
    if scope.teams is None and scope.holder is None:
        return None
    if scope.holder is not None:
        return {a.id for a in accounts if a.owner == scope.holder}
    teams = set(scope.teams or ())
    return {a.id for a in accounts if account_team(people, a) in teams}


def within(account_id: str, accounts: Collection[str] | None) -> bool:
    return accounts is None or account_id in accounts


@dataclass(frozen=True)
class Outcomes:
    """What a rule's playbook runs came to, as the runs index and escalations record it."""

    started: int
    running: int
    completed: int  # ended by the playbook: a `complete` step, its last step, or its goal
    cancelled: int
    goal_reached: int  # of the completed: the playbook's goal held (outcome goal_met)
    goal_not_reached: int  # of the completed: any other outcome
    escalated_runs: int  # runs that raised an escalation (the escalations index says so)
    escalations: int  # every escalation raised for the rule, by it or by its runs
    escalations_open: int  # of those: not resolved
    recorded: tuple[tuple[str, int], ...]  # each recorded outcome of the completed runs


def outcomes(
    runs: Sequence[Run], raised: Sequence[RaisedEscalation], accounts: Collection[str] | None
) -> Outcomes:
    runs = [r for r in runs if within(r.account_id, accounts)]
    raised = [e for e in raised if within(e.account_id, accounts)]
    status = Counter(r.status for r in runs)
    done = [r for r in runs if r.status == "completed"]
    recorded = Counter(r.outcome or "none recorded" for r in done)
    run_ids = {r.workflow_id for r in runs}
    return Outcomes(
        started=len(runs),
        running=status["running"],
        completed=len(done),
        cancelled=status["cancelled"],
        goal_reached=recorded[GOAL_MET],
        goal_not_reached=len(done) - recorded[GOAL_MET],
        escalated_runs=len({e.source_workflow_id for e in raised} & run_ids),
        escalations=len(raised),
        escalations_open=sum(1 for e in raised if e.status != "resolved"),
        recorded=tuple(sorted(recorded.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


@dataclass(frozen=True)
class BandWeeks:
    """Accounts per health band at the end of each week (the current one: today)."""

    span: tuple[Week, ...]
    counts: dict[str, list[int]]  # band (and UNKNOWN) -> one count per week
    accounts: int
    failures: tuple[str, ...]  # accounts whose facts cannot be derived, with why


class BandHistory:
    """Each account's health band on the last day of each of the last weeks, computed
    from the signals stored now (a signal that arrived late counts on the day it happened):
    the store keeps signals, and health is derived from them, not stored. An account's
    bands are kept until its signals, the account or the day change (deriving them costs
    about 2 ms an account). Thread-safe; holds at most `max_accounts`."""

    def __init__(self, facts: FactsReader, model: HealthModel, max_accounts: int = 50_000):
        self.facts = facts
        self.model = model
        self.max_accounts = max_accounts
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[Hashable, list[str] | str]] = {}

    def weeks(self, accounts: Sequence[Account], now: datetime, n: int = WEEKS) -> BandWeeks:
        span = weeks(now, n)
        days = tuple(_last_day(w) for w in span)
        counts: dict[str, list[int]] = {b: [0] * n for b in (*BANDS, UNKNOWN)}
        failures = []
        histories = self.facts.histories([a.id for a in accounts]) if accounts else {}
        for account in accounts:
            signals, version = histories[account.id]
            bands = self._bands(account, signals, (version, account, days))
            if isinstance(bands, str):
                failures.append(f"{account.id}: {bands}")
                bands = [UNKNOWN] * n
            for i, band in enumerate(bands):
                counts[band if band in BANDS else UNKNOWN][i] += 1
        return BandWeeks(tuple(span), counts, len(accounts), tuple(failures))

    def _bands(
        self,
        account: Account,
        signals: Sequence[Signal],
        key: tuple[Any, Account, tuple[date, ...]],
    ) -> list[str] | str:
        """The account's band on each of the days, or why its facts cannot be derived."""
        with self._lock:
            held = self._kept.get(account.id)
        if held is not None and held[0] == key:
            return held[1]
        days = key[2]
        try:
            # every day of the frame is read at its end, the last one too
            frame = derive(account, signals, days[-1], self.model, start=days[0])
        except Exception as exc:  # this account's stored signals: counted as unknown
            log.warning("facts cannot be computed for account %s: %s", account.id, exc)
            found: list[str] | str = failure_reason(exc)
        else:
            by_day = dict(zip(frame.days, frame.band, strict=True))
            found = [by_day.get(day) or UNKNOWN for day in days]
        with self._lock:
            if len(self._kept) >= self.max_accounts:
                self._kept.clear()  # a rare full reset beats tracking recency per read
            self._kept[account.id] = (key, found)
        return found


def _last_day(week: Week) -> date:
    if week.partial:
        return week.end.date()
    return (week.end - timedelta(days=1)).date()
