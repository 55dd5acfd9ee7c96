"""Two versions of the rules replayed over the same history: what a change would have done.

The facts are derived once, with every derived fact either version reads, and both versions
replay over them, so the two sides differ only by the rules. Each version runs as it would
ship: a rule disabled in a version fires nothing in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal
from csautomation.rules.backtest import BacktestResult, derive_frames, replay
from csautomation.rules.diff import RuleChange, Status, diff_rulesets
from csautomation.rules.loader import RuleSet

__all__ = ["BacktestComparison", "RuleComparison", "compare_backtest"]


@dataclass(frozen=True)
class RuleComparison:
    rule_id: str
    status: Status
    fields: tuple[str, ...]  # the fields that changed
    before: tuple[int, ...] | None  # firings per week; None: no such rule in that version
    after: tuple[int, ...] | None
    entering: tuple[str, ...]  # account ids that fire only in the new version
    leaving: tuple[str, ...]  # ... only in the old
    disabled: tuple[bool, bool] = (False, False)  # disabled before, after

    @property
    def total_before(self) -> int:
        return sum(self.before or ())

    @property
    def total_after(self) -> int:
        return sum(self.after or ())

    @property
    def delta(self) -> int:
        return self.total_after - self.total_before

    @property
    def moved(self) -> bool:
        """Whether any week's firings or any account differ between the versions."""
        weeks = max(len(self.before or ()), len(self.after or ()))
        return (self.before or (0,) * weeks) != (self.after or (0,) * weeks) or bool(
            self.entering or self.leaving
        )

    def to_dict(self, names: dict[str, str]) -> dict[str, Any]:
        def people(ids: tuple[str, ...]) -> list[dict[str, str]]:
            return [{"id": a, "name": names.get(a, "")} for a in ids]

        return {
            "id": self.rule_id,
            "change": self.status,
            "fields": list(self.fields),
            "disabled": {"before": self.disabled[0], "after": self.disabled[1]},
            "before": None if self.before is None else list(self.before),
            "after": None if self.after is None else list(self.after),
            "total_before": self.total_before,
            "total_after": self.total_after,
            "delta": self.delta,
            "entering": people(self.entering),
            "leaving": people(self.leaving),
        }


@dataclass(frozen=True)
class BacktestComparison:
    before_label: str
    after_label: str
    start: date
    end: date
    accounts: int
    weeks: tuple[date, ...]
    rules: tuple[RuleComparison, ...]
    names: dict[str, str]  # account id -> name
    hit_before: frozenset[str]  # accounts any rule fired on
    hit_after: frozenset[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before_label,
            "after": self.after_label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "accounts": self.accounts,
            "weeks": [w.isoformat() for w in self.weeks],
            "rules": [r.to_dict(self.names) for r in self.rules],
            "accounts_fired_on": {
                "before": len(self.hit_before),
                "after": len(self.hit_after),
                "entering": sorted(self.hit_after - self.hit_before),
                "leaving": sorted(self.hit_before - self.hit_after),
            },
        }


def compare_backtest(
    before: RuleSet,
    after: RuleSet,
    labels: tuple[str, str],
    accounts: Sequence[Account],
    signals: Iterable[Signal],
    model: HealthModel,
    end: date,
    days: int,
    progress: Callable[[int], None] | None = None,
) -> BacktestComparison:
    old_rules, new_rules = before.enabled, after.enabled
    frames = derive_frames(accounts, signals, [*old_rules, *new_rules], model, end, days, progress)
    old, new = replay(frames, old_rules, end, days), replay(frames, new_rules, end, days)
    disabled_before = {r.id for r in before.rules if not r.rule.enabled}
    disabled_after = {r.id for r in after.rules if not r.rule.enabled}
    rules = tuple(
        _one(
            change, old, new, (change.rule_id in disabled_before, change.rule_id in disabled_after)
        )
        for change in diff_rulesets(before, after)
    )
    return BacktestComparison(
        labels[0],
        labels[1],
        new.start,
        new.end,
        new.accounts,
        tuple(new.weeks),
        rules,
        {a.id: a.name for a in accounts},
        frozenset(a for hit in old.accounts_hit.values() for a in hit),
        frozenset(a for hit in new.accounts_hit.values() for a in hit),
    )


def _one(
    change: RuleChange, old: BacktestResult, new: BacktestResult, disabled: tuple[bool, bool]
) -> RuleComparison:
    rule_id, zeros = change.rule_id, (0,) * len(new.weeks)
    before = None if change.status == "added" else tuple(old.fires.get(rule_id, zeros))
    after = None if change.status == "removed" else tuple(new.fires.get(rule_id, zeros))
    hit_before = old.accounts_hit.get(rule_id, set())
    hit_after = new.accounts_hit.get(rule_id, set())
    return RuleComparison(
        rule_id,
        change.status,
        tuple(c.field for c in change.changes),
        before,
        after,
        tuple(sorted(hit_after - hit_before)),
        tuple(sorted(hit_before - hit_after)),
        disabled,
    )
