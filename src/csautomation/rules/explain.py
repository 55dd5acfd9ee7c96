"""Why a rule matched (or not): every fact read, with its value, and every comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from csautomation.rules.ir import And, CompiledRule, Leaf, Node, Not, Or

SYMBOL = {
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "eq": "==",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
    "between": "between",
    "exists": "exists",
    "contains": "contains",
}


def leaf_holds(op: str, actual: Any, value: Any) -> bool:
    """One comparison, missing-is-false. Shared by explain and the fact-view helpers."""
    if actual is None:
        return False
    if op == "exists":
        return True
    if op == "lt":
        return bool(actual < value)
    if op == "lte":
        return bool(actual <= value)
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "eq":
        # True == 1 in Python; a boolean fact never equals a number here.
        return isinstance(actual, bool) == isinstance(value, bool) and bool(actual == value)
    if op == "ne":
        return not leaf_holds("eq", actual, value)
    if op == "in":
        return any(leaf_holds("eq", actual, v) for v in value)
    if op == "not_in":
        return not any(leaf_holds("eq", actual, v) for v in value)
    if op == "between":
        return bool(value[0] <= actual <= value[1])
    if op == "contains":
        return value in actual
    raise ValueError(f"unknown operator {op}")


@dataclass(frozen=True)
class Check:
    fact: str
    op: str
    expected: Any
    actual: Any
    result: bool

    def text(self) -> str:
        shown = "missing" if self.actual is None else repr(self.actual)
        if self.op == "exists":
            return f"{self.fact} exists (value: {shown})"
        expected = (
            f"{self.expected[0]} and {self.expected[1]}"
            if self.op == "between"
            else list(self.expected)
            if isinstance(self.expected, tuple)
            else repr(self.expected)
        )
        return f"{self.fact} {SYMBOL[self.op]} {expected} (value: {shown})"


@dataclass(frozen=True)
class ExplainNode:
    kind: str  # all, any, not, check
    result: bool
    children: tuple[ExplainNode, ...] = ()
    check: Check | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.check is not None:
            c = self.check
            expected = list(c.expected) if isinstance(c.expected, tuple) else c.expected
            return {
                "check": {
                    "fact": c.fact,
                    "op": c.op,
                    "expected": expected,
                    "actual": c.actual,
                    "result": c.result,
                }
            }
        return {self.kind: [ch.to_dict() for ch in self.children], "result": self.result}

    @classmethod
    def from_dict(cls, data: Any) -> ExplainNode | None:
        """The node `to_dict` wrote, as a firing's stored explain holds it; None for a
        shape it never wrote (a row written by hand), so a page shows "not recorded"."""
        if not isinstance(data, dict):
            return None
        check = data.get("check")
        if isinstance(check, dict):
            if not isinstance(check.get("fact"), str) or check.get("op") not in SYMBOL:
                return None
            expected = check.get("expected")
            found = Check(
                check["fact"],
                check["op"],
                tuple(expected) if isinstance(expected, list) else expected,
                check.get("actual"),
                bool(check.get("result")),
            )
            return cls("check", found.result, check=found)
        kind = next((k for k in ("all", "any", "not") if isinstance(data.get(k), list)), None)
        if kind is None:
            return None
        children = tuple(cls.from_dict(c) for c in data[kind])
        if any(c is None for c in children):
            return None
        return cls(kind, bool(data.get("result")), tuple(c for c in children if c is not None))


@dataclass(frozen=True)
class Explanation:
    rule_id: str
    rule_version: str
    matched: bool
    tree: ExplainNode
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "matched": self.matched,
            "facts": self.facts,
            "conditions": self.tree.to_dict(),
        }

    def render(self) -> str:
        verdict = "MATCHES" if self.matched else "does not match"
        lines = [f"rule {self.rule_id} (version {self.rule_version}) {verdict}", "facts read:"]
        lines += [f"  {k} = {'missing' if v is None else repr(v)}" for k, v in self.facts.items()]
        lines.append("conditions:")
        self._render(self.tree, 1, lines)
        return "\n".join(lines)

    def _render(self, node: ExplainNode, depth: int, lines: list[str]) -> None:
        mark = "✔" if node.result else "✘"
        pad = "  " * depth
        if node.check is not None:
            lines.append(f"{pad}{mark} {node.check.text()}")
            return
        label = {"all": "all of", "any": "any of", "not": "not"}[node.kind]
        lines.append(f"{pad}{mark} {label}:")
        for child in node.children:
            self._render(child, depth + 1, lines)


def _walk(node: Node, record: Mapping[str, Any], facts: dict[str, Any]) -> ExplainNode:
    if isinstance(node, Leaf):
        actual = record.get(node.key)
        facts[node.key] = actual
        ok = leaf_holds(node.op, actual, node.value)
        return ExplainNode("check", ok, check=Check(node.key, node.op, node.value, actual, ok))
    if isinstance(node, Not):
        inner = _walk(node.item, record, facts)
        return ExplainNode("not", not inner.result, (inner,))
    children = tuple(_walk(i, record, facts) for i in node.items)
    if isinstance(node, And):
        return ExplainNode("all", all(c.result for c in children), children)
    assert isinstance(node, Or)
    return ExplainNode("any", any(c.result for c in children), children)


def holds(node: Node, record: Mapping[str, Any]) -> bool:
    """Whether a condition tree holds for a record (used by playbooks on fresh facts)."""
    return _walk(node, record, {}).result


def explain(rule: CompiledRule, record: Mapping[str, Any]) -> Explanation:
    facts: dict[str, Any] = {}
    tree = _walk(rule.condition, record, facts)
    return Explanation(rule.id, rule.version, tree.result, tree, facts)
