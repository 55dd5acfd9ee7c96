"""A deliberately plain reference evaluator for rule conditions, for the tests only.

It reads the parsed rule (spec objects, not the compiled tree) and the written meaning of
the language: a comparison over a missing fact is false; `not` is boolean negation;
empty lists and nulls are missing; numbers compare after rounding to 6 decimals.
"""

from __future__ import annotations

from typing import Any

from csautomation.rules import spec


def _num(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    return v


def _get(record: dict[str, Any], key: str) -> Any:
    v = record.get(key)
    if v is None or v == [] or v == ():
        return None
    return _num(v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == _num(b))


def comparison(c: spec.Comparison, record: dict[str, Any]) -> bool:
    v = _get(record, c.fact)
    if v is None:
        return False
    op, want = c.op, c.value
    if op == "exists":
        return True
    if op == "lt":
        return bool(v < _num(want))
    if op == "lte":
        return bool(v <= _num(want))
    if op == "gt":
        return bool(v > _num(want))
    if op == "gte":
        return bool(v >= _num(want))
    if op == "eq":
        return _same(v, want)
    if op == "ne":
        return not _same(v, want)
    if op == "in":
        return any(_same(v, w) for w in want)
    if op == "not_in":
        return not any(_same(v, w) for w in want)
    if op == "between":
        return bool(_num(want[0]) <= v <= _num(want[1]))
    if op == "contains":
        return want in v
    raise AssertionError(op)


def condition(c: Any, record: dict[str, Any]) -> bool:
    if isinstance(c, spec.AllCondition):
        return all(condition(i, record) for i in c.all)
    if isinstance(c, spec.AnyCondition):
        return any(condition(i, record) for i in c.any)
    if isinstance(c, spec.NotCondition):
        return not condition(c.not_, record)
    if isinstance(c, spec.WindowCondition):
        w = c.window
        direction, amount = ("fell", w.fell_by) if w.fell_by is not None else ("rose", w.rose_by)
        v = _get(record, f"window:{w.fact}:{direction}:{w.within.days}d")
        return v is not None and v >= _num(amount)
    if isinstance(c, spec.SignalsCondition):
        s = c.signals
        key = f"signals:{s.counting}:{s.within.days}d:{','.join(sorted(t.value for t in s.of))}"
        v = _get(record, key)
        return v is not None and v >= s.at_least
    assert isinstance(c, spec.Comparison)
    return comparison(c, record)


def matches(rule: spec.Rule, record: dict[str, Any]) -> bool:
    sc = rule.scope
    for key, allowed in (
        ("account.tenant", sc.tenants),
        ("account.tier", [t.value for t in sc.tiers]),
        ("account.segment", sc.segments),
        ("account.region", sc.regions),
    ):
        if allowed and _get(record, key) not in allowed:
            return False
    return condition(rule.conditions, record)
