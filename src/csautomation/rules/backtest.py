"""Backtest: replay stored history day by day through the batch path, with no side effects.

For each account-day in the period the rules' conditions are evaluated over columns; a rule
counts as firing on a day when its conditions hold, it would have woken (a triggering signal
arrived for the account that day, or its cron schedule ran that day) and the account is
outside the rule's cooldown since its last firing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt

from csautomation.facts.derive import FactFrame, derive, group_by_account
from csautomation.facts.derived import DerivedFact
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal
from csautomation.rules.batch import BatchEvaluator, Columns
from csautomation.rules.ir import CompiledRule

STRING_KEYS = (
    "account.id",
    "account.tier",
    "account.segment",
    "account.region",
    "account.tenant",
    "account.owner",
)


@dataclass
class BacktestResult:
    start: date
    end: date
    accounts: int
    rules: list[str]
    weeks: list[date]
    fires: dict[str, list[int]] = field(default_factory=dict)  # rule -> firings per week
    accounts_hit: dict[str, set[str]] = field(default_factory=dict)
    account_days: int = 0

    def overlap(self, a: str, b: str) -> int:
        return len(self.accounts_hit[a] & self.accounts_hit[b])


def schedule_days(expr: str, start: date, end: date) -> set[date]:
    """The days in [start, end] on which the cron expression fires at least once (UTC)."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(expr, timezone="UTC")
    days: set[date] = set()
    day = start
    while day <= end:
        begin = datetime.combine(day, time(0), tzinfo=UTC)
        fire = trigger.get_next_fire_time(None, begin)
        if fire is not None and fire < begin + timedelta(days=1):
            days.add(day)
        day += timedelta(days=1)
    return days


def frames_to_columns(frames: Sequence[FactFrame], keys: Iterable[str]) -> Columns:
    days = len(frames[0].days) if frames else 0
    cols = Columns(days * len(frames))
    for key in keys:
        if key == "health.band":
            cols.add(key, [b for f in frames for b in f.band])
        elif key == "account.tags":
            cols.add(key, [list(f.account.tags) or None for f in frames for _ in range(days)])
        elif key in STRING_KEYS:
            attr = key.split(".", 1)[1]
            cols.add(key, [str(getattr(f.account, attr)) for f in frames for _ in range(days)])
        else:
            nan = np.full(days, np.nan)
            cols.add(
                key,
                np.concatenate([f.numbers.get(key, nan) for f in frames])
                if frames
                else np.zeros(0),
            )
    return cols


def backtest(
    accounts: Sequence[Account],
    signals: Iterable[Signal],
    rules: Sequence[CompiledRule],
    model: HealthModel,
    end: date,
    days: int,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    frames = derive_frames(accounts, signals, rules, model, end, days, progress)
    return replay(frames, rules, end, days)


def derive_frames(
    accounts: Sequence[Account],
    signals: Iterable[Signal],
    rules: Sequence[CompiledRule],
    model: HealthModel,
    end: date,
    days: int,
    progress: Callable[[int], None] | None = None,
) -> list[FactFrame]:
    """Every account's facts for each day of the period, with the derived facts `rules` read
    (the costly half of a backtest: two versions of the rules can share it)."""
    start = end - timedelta(days=days - 1)
    derived: dict[str, DerivedFact] = {d.key: d for r in rules for d in r.derived}
    by_account = group_by_account(signals)
    frames = []
    for account in accounts:
        frames.append(
            derive(
                account,
                by_account.get(account.id, []),
                end,
                model,
                list(derived.values()),
                start=start,
            )
        )
        if progress:
            progress(1)
    return frames


def replay(
    frames: Sequence[FactFrame], rules: Sequence[CompiledRule], end: date, days: int
) -> BacktestResult:
    """The firings of `rules` over frames from `derive_frames` for the same period."""
    start = end - timedelta(days=days - 1)
    evaluator = BatchEvaluator(rules)
    masks = evaluator.evaluate(frames_to_columns(frames, evaluator.keys))
    n_acc = len(frames)
    week0 = start - timedelta(days=start.weekday())
    weeks = [week0 + timedelta(weeks=i) for i in range((end - week0).days // 7 + 1)]
    week_of_day = np.array([((start + timedelta(days=d)) - week0).days // 7 for d in range(days)])
    result = BacktestResult(
        start, end, n_acc, [r.id for r in rules], weeks, account_days=n_acc * days
    )
    for rule in rules:
        cond = masks[rule.id].reshape(n_acc, days)
        woke = _woke(rule, frames, start, end, days)
        ok = cond & woke
        cooldown = max(1, int(rule.rule.cooldown.total_seconds() // 86400))
        last = np.full(n_acc, -(10**9))
        fired = np.zeros((n_acc, days), dtype=bool)
        for d in range(days):
            f = ok[:, d] & (d - last >= cooldown)
            last[f] = d
            fired[:, d] = f
        per_week = np.bincount(week_of_day, weights=fired.sum(axis=0), minlength=len(weeks))
        result.fires[rule.id] = [int(x) for x in per_week]
        result.accounts_hit[rule.id] = {
            frames[int(i)].account.id for i in np.flatnonzero(fired.any(1))
        }
    return result


def _woke(
    rule: CompiledRule, frames: Sequence[FactFrame], start: date, end: date, days: int
) -> npt.NDArray[np.bool_]:
    trig = rule.rule.trigger
    woke = np.zeros((len(frames), days), dtype=bool)
    for i, f in enumerate(frames):
        for kind in trig.on:
            counts = f.today_counts.get(kind.value)
            if counts is not None:
                woke[i] |= counts > 0
    if trig.schedule:
        on_days = schedule_days(trig.schedule, start, end)
        cols = [d for d in range(days) if start + timedelta(days=d) in on_days]
        woke[:, cols] = True
    return woke
