"""The compiled form of a condition, shared by every evaluation path.

Rules lower to a small tree of `Leaf`, `And`, `Or` and `Not`. Window and signal-count
conditions lower to leaves over *derived* fact keys (e.g. `window:health.score:fell:30d`),
which the fact builder computes from history, so every path only ever compares a value.

Meaning (the one every path must agree on): a leaf over a missing fact is false, except
that `Not` of it is true; `exists` is true when a value is present. Empty lists and nulls
count as missing. Numbers are compared after rounding to 6 decimals.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from csautomation.facts.catalog import FACTS, FactType
from csautomation.facts.derived import DerivedFact, SignalsFact, WindowFact, norm
from csautomation.rules import spec


@dataclass(frozen=True, slots=True)
class Leaf:
    key: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Leaf | And | Or | Not


def fact_type(key: str) -> FactType:
    return FACTS[key].type if key in FACTS else FactType.number


@dataclass(frozen=True)
class CompiledRule:
    rule: spec.Rule
    version: str
    condition: Node
    derived: tuple[DerivedFact, ...]

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def rank(self) -> int:
        return spec.PRIORITY_RANK[self.rule.priority]


def rule_version(rule: spec.Rule) -> str:
    canonical = json.dumps(rule.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _days(value: timedelta) -> int:
    return int(value.total_seconds() // 86400)


def lower(cond: Any, derived: dict[str, DerivedFact]) -> Node:
    if isinstance(cond, spec.AllCondition):
        return And(tuple(lower(c, derived) for c in cond.all))
    if isinstance(cond, spec.AnyCondition):
        return Or(tuple(lower(c, derived) for c in cond.any))
    if isinstance(cond, spec.NotCondition):
        return Not(lower(cond.not_, derived))
    if isinstance(cond, spec.WindowCondition):
        w = cond.window
        direction = "fell" if w.fell_by is not None else "rose"
        wf = WindowFact(w.fact, direction, _days(w.within))
        derived[wf.key] = wf
        amount = w.fell_by if w.fell_by is not None else w.rose_by
        return Leaf(wf.key, "gte", norm(amount))
    if isinstance(cond, spec.SignalsCondition):
        s = cond.signals
        sf = SignalsFact(tuple(sorted(t.value for t in s.of)), _days(s.within), s.counting)
        derived[sf.key] = sf
        return Leaf(sf.key, "gte", s.at_least)
    if isinstance(cond, spec.Comparison):
        value = cond.value
        if cond.op == "between":
            value = (norm(value[0]), norm(value[1]))
        elif cond.op in ("in", "not_in"):
            value = tuple(norm(v) for v in value)
        else:
            value = norm(value)
        return Leaf(cond.fact, cond.op, value)
    raise TypeError(f"not a condition: {cond!r}")


def scope_leaves(scope: spec.Scope) -> list[Node]:
    out: list[Node] = []
    for key, values in (
        ("account.tenant", scope.tenants),
        ("account.tier", [t.value for t in scope.tiers]),
        ("account.segment", scope.segments),
        ("account.region", scope.regions),
    ):
        if values:
            out.append(Leaf(key, "in", tuple(values)))
    return out


def compile_rule(rule: spec.Rule) -> CompiledRule:
    derived: dict[str, DerivedFact] = {}
    body = lower(rule.conditions, derived)
    scope = scope_leaves(rule.scope)
    condition: Node = And((*scope, body)) if scope else body
    return CompiledRule(rule, rule_version(rule), condition, tuple(derived.values()))


def leaves(node: Node) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, Not):
        return leaves(node.item)
    return [leaf for item in node.items for leaf in leaves(item)]


def fact_keys(node: Node) -> list[str]:
    return list(dict.fromkeys(leaf.key for leaf in leaves(node)))
