"""The rule runtime: the current rule set (reloaded when files change), triggers,
cooldowns and priority order around the streaming evaluator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from csautomation.config.reload import Watch, version_changes
from csautomation.errors import ConfigFileError
from csautomation.facts.days import AsOf
from csautomation.facts.derive import derive
from csautomation.facts.derived import DerivedFact
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal
from csautomation.rules.engine import StreamingEvaluator
from csautomation.rules.explain import Explanation, explain
from csautomation.rules.ir import CompiledRule
from csautomation.rules.loader import RuleSet, load_rules

log = logging.getLogger(__name__)

SCHEDULE = "schedule"


class CooldownStore(Protocol):
    def last_fired(self, rule_id: str, account_id: str) -> datetime | None: ...

    def record(self, match: Match) -> None: ...


class MemoryCooldowns:
    def __init__(self) -> None:
        self._last: dict[tuple[str, str], datetime] = {}

    def last_fired(self, rule_id: str, account_id: str) -> datetime | None:
        return self._last.get((rule_id, account_id))

    def record(self, match: Match) -> None:
        self._last[(match.rule_id, match.account_id)] = match.at


@dataclass(slots=True, unsafe_hash=True)
class Match:
    """A rule that matched an account's facts; `facts` is the record it was evaluated on.
    A value: read it, never assign to it (not frozen only because a frozen dataclass takes
    three times as long to build, and a pass builds one per match)."""

    rule: CompiledRule
    account_id: str
    at: datetime
    facts: Mapping[str, Any] = field(repr=False, compare=False)
    _explanation: Explanation | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def explanation(self) -> Explanation:
        """Computed on first use (most matches are only counted or cooled down), from the
        record as it is then: callers do not change a record after evaluating it."""
        if self._explanation is None:
            self._explanation = explain(self.rule, self.facts)
        return self._explanation

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def window(self) -> int:
        """Index of the cooldown window `at` falls in; stable across re-evaluations."""
        return int(self.at.timestamp() // self.rule.rule.cooldown.total_seconds())

    def to_dict(self) -> dict[str, Any]:
        r = self.rule.rule
        return {
            "rule_id": r.id,
            "rule_version": self.rule.version,
            "priority": r.priority.value,
            "account_id": self.account_id,
            "at": self.at.isoformat(),
            "window": self.window,
            "actions": [a.model_dump(mode="json", by_alias=True) for a in r.actions],
            "explain": self.explanation.to_dict(),
        }


class Evaluation(NamedTuple):
    """A named tuple, not a frozen dataclass: built on every evaluation, and three times
    cheaper to build."""

    fired: tuple[Match, ...]
    suppressed: tuple[Match, ...]  # matched, but inside the rule's cooldown for the account


NOTHING = Evaluation((), ())


Trigger = str | Collection[str] | None


class ToEvaluate(NamedTuple):
    """One record for `RuleRuntime.evaluate_records`, with `evaluate_record`'s arguments."""

    account_id: str
    record: dict[str, Any]
    at: datetime
    trigger: Trigger


def triggered(rule: CompiledRule, trigger: Trigger) -> bool:
    """None evaluates every rule (dry runs); otherwise signal types and/or SCHEDULE."""
    kinds = _kinds(trigger)
    return kinds is None or not kinds.isdisjoint(_wakes(rule))


class RuleSource(Protocol):
    """Where a runtime gets its rules: the last good set, reloaded when the files change."""

    @property
    def ruleset(self) -> RuleSet: ...

    @property
    def last_error(self) -> ConfigFileError | None: ...

    def reload_if_changed(self, force: bool = False) -> bool: ...


class RuleFiles:
    """Rule files alone, followed as they change; `live.LiveConfiguration` follows them
    together with the playbooks they start."""

    def __init__(
        self,
        paths: Sequence[Path],
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = list(paths)
        self.ruleset = load_rules(self.paths)
        self._watch = Watch([self.paths], (self.ruleset.fingerprint,), reload_interval, clock)

    @property
    def last_error(self) -> ConfigFileError | None:
        return self._watch.last_error

    def reload_if_changed(self, force: bool = False) -> bool:
        """Swap in the rule files' new contents; on errors keep serving the last good set."""
        if not self._watch.due(force):
            return False
        with self._watch.look(force) as found:
            if found is None:
                return False
            try:
                ruleset = load_rules(self.paths)
            except ConfigFileError as exc:
                self._watch.refused(
                    log, exc, "rule files changed but do not validate; the last good rules serve"
                )
                return False
            old, self.ruleset = self.ruleset, ruleset
            self._watch.accepted()
            log_rule_changes(old, ruleset)
            return True


def log_rule_changes(old: RuleSet, new: RuleSet) -> None:
    """The INFO line of a rule reload: each rule it changed, with its version."""
    changes = version_changes(
        {r.id: r.version for r in old.rules}, {r.id: r.version for r in new.rules}
    )
    if changes:
        log.info(
            "reloaded rules: %s",
            ", ".join(changes),
            extra={"reloaded": "rules", "rules": len(new.rules)},
        )
    else:
        log.info("rule files reloaded; no rule changed (%d rules)", len(new.rules))


class RuleRuntime:
    """Evaluates the rules of `source` (by default the rule files under `paths`), following
    it: each evaluation first picks up a reloaded set."""

    def __init__(
        self,
        paths: Sequence[Path],
        model: HealthModel,
        cooldowns: CooldownStore | None = None,
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        source: RuleSource | None = None,
    ) -> None:
        self.paths = list(paths)
        self.model = model
        self.cooldowns = cooldowns or MemoryCooldowns()
        self.source: RuleSource = source or RuleFiles(self.paths, reload_interval, clock)
        self._swapping = threading.Lock()
        # held while an evaluation uses a plan, so a reload closes the old one (deleting its
        # durable_rules rulesets) only once nothing asserts into it
        self._using = threading.Lock()
        self.ruleset = self.source.ruleset
        self._plan = _Plan(self.ruleset)  # read and replaced whole, never changed

    @property
    def last_error(self) -> ConfigFileError | None:
        """Why the files as they are now do not validate (None when they do)."""
        return self.source.last_error

    def reload_if_changed(self, force: bool = False) -> bool:
        """Follow the source: True when this runtime swapped in a new rule set."""
        self.source.reload_if_changed(force)
        if self.source.ruleset is self._plan.ruleset:  # the usual answer, without the lock
            return False
        with self._swapping:
            ruleset = self.source.ruleset
            if ruleset is self._plan.ruleset:
                return False
            plan = _Plan(ruleset)  # built before taking the lock evaluations wait on
            with self._using:  # one assignment: the rule set and its evaluator together
                old, self._plan = self._plan, plan
                self.ruleset = ruleset
        old.evaluator.close()
        return True

    @property
    def derived(self) -> tuple[DerivedFact, ...]:
        seen: dict[str, DerivedFact] = {}
        for r in self.ruleset.enabled:
            for d in r.derived:
                seen.setdefault(d.key, d)
        return tuple(seen.values())

    def evaluate_record(
        self,
        account_id: str,
        record: dict[str, Any],
        at: datetime,
        trigger: Trigger,
        apply_cooldown: bool = True,
        cooldowns: CooldownStore | None = None,
    ) -> Evaluation:
        """`cooldowns` overrides the runtime's store for this call (a batch's own view)."""
        self.reload_if_changed()
        with self._using:
            plan = self._plan
            # the evaluator answers in priority order, among the rules `trigger` wakes (one
            # signal type, the pipeline's usual call, read inline: this is the hot path)
            among = plan.wakes.get(trigger, 0) if type(trigger) is str else plan.woken(trigger)
            rules = plan.evaluator.matched(record, among)
        if not rules:
            return NOTHING
        return self._judge(rules, account_id, record, at, apply_cooldown, cooldowns)

    def evaluate_records(
        self,
        items: Sequence[ToEvaluate],
        apply_cooldown: bool = True,
        cooldowns: CooldownStore | None = None,
    ) -> list[Evaluation | Exception]:
        """`evaluate_record` for each item, in order, the records asserted into
        durable_rules together (a pipeline pass's accounts). An item whose rules cannot be
        evaluated gives its exception in its place; the others are evaluated."""
        self.reload_if_changed()
        found: list[list[CompiledRule] | Exception]
        with self._using:
            plan = self._plan
            among = [plan.woken(item.trigger) for item in items]
            records = [item.record for item in items]
            try:
                found = list(plan.evaluator.matched_many(records, among))
            except Exception:  # one record failed the batch: ask each alone, keep why
                alone = zip(records, among, strict=True)
                found = [_matched_alone(plan.evaluator, r, a) for r, a in alone]
        out: list[Evaluation | Exception] = []
        for item, rules in zip(items, found, strict=True):
            if isinstance(rules, Exception):
                out.append(rules)
            elif not rules:
                out.append(NOTHING)
            else:
                a, rec = item.account_id, item.record
                try:
                    out.append(self._judge(rules, a, rec, item.at, apply_cooldown, cooldowns))
                except Exception as exc:  # held with its account, as a matching failure is
                    out.append(exc)
        return out

    def _judge(
        self,
        rules: list[CompiledRule],
        account_id: str,
        record: dict[str, Any],
        at: datetime,
        apply_cooldown: bool,
        cooldowns: CooldownStore | None,
    ) -> Evaluation:
        """The matches of these rules, fired or suppressed by their cooldowns."""
        if not apply_cooldown:  # explanations are built only when read
            return Evaluation(tuple([Match(r, account_id, at, record) for r in rules]), ())
        store = cooldowns or self.cooldowns
        fired: list[Match] = []
        suppressed: list[Match] = []
        for rule in rules:
            match = Match(rule, account_id, at, record)
            last = store.last_fired(rule.id, account_id)
            if last is not None and at - last < rule.rule.cooldown:
                suppressed.append(match)
            else:
                fired.append(match)
                store.record(match)
        return Evaluation(tuple(fired), tuple(suppressed))

    def record_for(
        self, account: Account, signals: Iterable[Signal], as_of: AsOf
    ) -> dict[str, Any]:
        """The facts at `as_of`: an instant, or a day read at its end (facts/days.py)."""
        return derive(account, signals, as_of, self.model, self.derived).record()

    def evaluate_account(
        self,
        account: Account,
        signals: Iterable[Signal],
        at: datetime,
        trigger: Trigger,
        apply_cooldown: bool = True,
        cooldowns: CooldownStore | None = None,
    ) -> Evaluation:
        self.reload_if_changed()
        record = self.record_for(account, signals, at)  # the signals up to `at` count
        return self.evaluate_record(account.id, record, at, trigger, apply_cooldown, cooldowns)

    def close(self) -> None:
        with self._using:
            self._plan.evaluator.close()


class _Plan:
    """One rule set made ready to evaluate: its evaluator, and the rules each trigger
    wakes (signal types, and SCHEDULE) as the evaluator's bit masks."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        enabled = ruleset.enabled
        # given in priority order (critical first, then by id), it answers in that order;
        # rulesets grouped by what wakes their rules, so a signal asks only its own
        self.evaluator = StreamingEvaluator(
            sorted(enabled, key=lambda r: (r.rank, r.id)), group=_wakes
        )
        self.every = self.evaluator.mask(r.id for r in enabled)
        kinds = {kind for r in enabled for kind in _wakes(r)}
        self.wakes = {
            kind: self.evaluator.mask(r.id for r in enabled if kind in _wakes(r)) for kind in kinds
        }

    def woken(self, trigger: Trigger) -> int:
        if trigger is None:
            return self.every
        if isinstance(trigger, str):
            return self.wakes.get(trigger, 0)
        mask = 0
        for kind in trigger:
            mask |= self.wakes.get(kind, 0)
        return mask


def _matched_alone(
    evaluator: StreamingEvaluator, record: Mapping[str, Any], among: int
) -> list[CompiledRule] | Exception:
    try:
        return evaluator.matched(record, among)
    except Exception as exc:  # the caller's: held with its account, the others evaluated
        return exc


def _wakes(rule: CompiledRule) -> frozenset[str]:
    t = rule.rule.trigger
    return frozenset([kind.value for kind in t.on] + ([SCHEDULE] if t.schedule is not None else []))


def _kinds(trigger: Trigger) -> frozenset[str] | None:
    if trigger is None:
        return None
    return frozenset((trigger,) if isinstance(trigger, str) else trigger)
