"""Compile rule condition trees to durable_rules ruleset definitions (JSON).

durable_rules has no `not`, so trees are pushed to negation normal form first, keeping our
missing-is-false meaning: `not (x < 5)` becomes `x >= 5 or x is missing`. Fact keys are
mapped to short column names (`f0`, `f1`, ...) so any fact path is a safe JSON key.
"""

from __future__ import annotations

from typing import Any

from csautomation.rules.ir import And, CompiledRule, Leaf, Node, Not, Or

_FLIP = {"lt": "gte", "lte": "gt", "gt": "lte", "gte": "lt", "eq": "ne", "ne": "eq"}


def nnf(node: Node, negate: bool = False) -> Node:
    """Push `Not` down to leaves; negated leaves become `Leaf(..., "not:<op>", ...)`."""
    if isinstance(node, Not):
        return nnf(node.item, not negate)
    if isinstance(node, And):
        items = tuple(nnf(i, negate) for i in node.items)
        return Or(items) if negate else And(items)
    if isinstance(node, Or):
        items = tuple(nnf(i, negate) for i in node.items)
        return And(items) if negate else Or(items)
    return Leaf(node.key, f"not:{node.op}", node.value) if negate else node


def _missing(col: str) -> dict[str, Any]:
    return {"$nex": {col: 1}}


def _or(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"$or": items}


def _and(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"$and": items}


def _leaf(col: str, op: str, value: Any) -> dict[str, Any]:
    if op in ("lt", "lte", "gt", "gte"):
        return {f"${op}": {col: value}}
    if op == "eq":
        return {col: value}
    if op == "ne":
        return {"$neq": {col: value}}
    if op == "in":
        return _or([{col: v} for v in value])
    if op == "not_in":
        return _and([{"$neq": {col: v}} for v in value])
    if op == "between":
        return {"$and": [{"$gte": {col: value[0]}}, {"$lte": {col: value[1]}}]}
    if op == "exists":
        return {"$ex": {col: 1}}
    if op == "contains":
        return {"$iany": {col: {"$eq": {"$i": value}}}}
    raise ValueError(f"unknown operator {op}")


def _negated_leaf(col: str, op: str, value: Any) -> dict[str, Any]:
    if op in _FLIP:
        return _or([_leaf(col, _FLIP[op], value), _missing(col)])
    if op == "in":
        return _or([_leaf(col, "not_in", value), _missing(col)])
    if op == "not_in":
        return _or([_leaf(col, "in", value), _missing(col)])
    if op == "between":
        return _or([{"$lt": {col: value[0]}}, {"$gt": {col: value[1]}}, _missing(col)])
    if op == "exists":
        return _missing(col)
    if op == "contains":
        # Lists are never empty here (empty counts as missing), so "all differ" is "not in".
        return _or([{"$iall": {col: {"$neq": {"$i": value}}}}, _missing(col)])
    raise ValueError(f"unknown operator {op}")


def to_durable(node: Node, columns: dict[str, str]) -> dict[str, Any]:
    node = nnf(node)
    if isinstance(node, And):
        return _and([to_durable(i, columns) for i in node.items])
    if isinstance(node, Or):
        return _or([to_durable(i, columns) for i in node.items])
    assert isinstance(node, Leaf)
    col = columns[node.key]
    if node.op.startswith("not:"):
        return _negated_leaf(col, node.op[4:], node.value)
    return _leaf(col, node.op, node.value)


def ruleset_definition(rules: list[CompiledRule], columns: dict[str, str]) -> dict[str, Any]:
    return {r.id: {"all": [{"m": to_durable(r.condition, columns)}]} for r in rules}
