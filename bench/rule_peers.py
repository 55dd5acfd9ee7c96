"""bench/rule_peers: the peers bench/rules.py measures csautomation's rule paths against,
each driven the strongest way measured here (../shared/RULE_ENGINES.md).

  * zen-engine (GoRules), expression table: one decision table with the collect hit
    policy and one row per rule, whose single cell is the rule's whole boolean expression
    with null guards (the missing-is-false meaning), evaluated by key through a static
    loader (`ZenEngine.evaluate` with `{"type": "static"}`: faster here than a callback
    loader, `evaluate_batch` or `get_decision(...).evaluate`).
  * zen-engine, fact columns: the layout compared before 2026-12: a column per fact with
    unary cells, and an expression column for nested any/not.
  * our own bitmask evaluator: bench/bitmask.py.
  * plain Python, one code-generated function for the whole rule set: the ceiling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import zen

from csautomation.rules.ir import And, CompiledRule, Leaf, Node, Not, Or

Evaluator = Callable[[dict[str, Any]], list[str]]


def _col(key: str) -> str:
    return key.replace(".", "__")


def _zen_leaf(leaf: Leaf) -> str:
    c, op, v = _col(leaf.key), leaf.op, leaf.value
    lit = json.dumps
    if op in ("in", "not_in"):
        body = f"{c} in {lit(list(v))}" if op == "in" else f"not({c} in {lit(list(v))})"
    elif op == "between":
        body = f"{c} >= {v[0]} and {c} <= {v[1]}"
    elif op == "exists":
        body = "true"
    else:
        symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}[op]
        body = f"{c} {symbol} {lit(v)}"
    return f"({c} != null and {body})"


def _zen(node: Node) -> str:
    if isinstance(node, Leaf):
        return _zen_leaf(node)
    if isinstance(node, Not):
        return f"not({_zen(node.item)})"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(_zen(i) for i in node.items) + ")"


def _unary(leaf: Leaf) -> str:
    """A decision-table cell in the fact's own column; `$` is the column's value."""
    # zen reads a cell that starts with "(" as something other than a unary test: no parens
    return _zen_leaf(Leaf("$", leaf.op, leaf.value))[1:-1]


def _graph(inputs: list[dict[str, str]], rows: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "in", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
            {
                "id": "t",
                "type": "decisionTableNode",
                "name": "rules",
                "position": {"x": 0, "y": 0},
                "content": {
                    "hitPolicy": "collect",
                    "inputs": inputs,
                    "outputs": [{"id": "o1", "name": "rule", "field": "rule"}],
                    "rules": rows,
                },
            },
            {"id": "out", "type": "outputNode", "name": "Response", "position": {"x": 0, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "sourceId": "in", "targetId": "t", "type": "edge"},
            {"id": "e2", "sourceId": "t", "targetId": "out", "type": "edge"},
        ],
    }


def _zen_run(graph: dict[str, Any]) -> Evaluator:
    # the static loader holds the parsed graph: a callback returning the JSON text had it
    # parsed on every evaluation (4 to 7 times slower at 50 and 200 rules)
    engine = zen.ZenEngine({"loader": {"type": "static", "content": {"rules": graph}}})

    def run(record: dict[str, Any]) -> list[str]:
        ctx = {_col(k): v for k, v in record.items()}
        return [hit["rule"] for hit in engine.evaluate("rules", ctx)["result"]]

    return run


def zen_expression_table(rules: list[CompiledRule]) -> Evaluator:
    """One row per rule, one expression cell holding the whole condition."""
    rows = [{"_id": r.id, "x": _zen(r.condition), "o1": f"'{r.id}'"} for r in rules]
    return _zen_run(_graph([{"id": "x", "name": "condition"}], rows))


def zen_fact_columns(rules: list[CompiledRule]) -> Evaluator:
    """A column per fact (unary cells for a rule's top-level comparisons, as a CS ops
    author would write them) and one expression column for nested any/not."""
    keys = sorted({leaf.key for r in rules for leaf in _top_leaves(r.condition)})
    inputs = [{"id": f"c{i}", "name": k, "field": _col(k)} for i, k in enumerate(keys)]
    inputs.append({"id": "x", "name": "nested"})
    column = {k: f"c{i}" for i, k in enumerate(keys)}
    rows = []
    for r in rules:
        row: dict[str, str] = {"_id": r.id, "o1": f"'{r.id}'"}
        rest: list[Node] = []
        items = r.condition.items if isinstance(r.condition, And) else (r.condition,)
        for item in items:
            if isinstance(item, Leaf) and column[item.key] not in row:
                row[column[item.key]] = _unary(item)
            else:
                rest.append(item)
        if rest:
            row["x"] = " and ".join(_zen(n) for n in rest)
        rows.append(row)
    return _zen_run(_graph(inputs, rows))


def _top_leaves(node: Node) -> list[Leaf]:
    items = node.items if isinstance(node, And) else (node,)
    return [i for i in items if isinstance(i, Leaf)]


def _py_leaf(leaf: Leaf) -> str:
    v = f"r.get({leaf.key!r})"
    op, val = leaf.op, leaf.value
    if op in ("in", "not_in"):
        body = f"x {'in' if op == 'in' else 'not in'} {tuple(val)!r}"
    elif op == "between":
        body = f"{val[0]!r} <= x <= {val[1]!r}"
    elif op == "exists":
        body = "True"
    else:
        symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}[op]
        body = f"x {symbol} {val!r}"
    return f"((x := {v}) is not None and {body})"


def _py(node: Node) -> str:
    if isinstance(node, Leaf):
        return _py_leaf(node)
    if isinstance(node, Not):
        return f"(not {_py(node.item)})"
    joiner = " and " if isinstance(node, And) else " or "
    assert isinstance(node, And | Or)
    return "(" + joiner.join(_py(i) for i in node.items) + ")"


def fused(rules: list[CompiledRule]) -> Evaluator:
    lines = ["def run(r):", "    out = []"]
    for rule in rules:
        lines.append(f"    if {_py(rule.condition)}: out.append({rule.id!r})")
    lines.append("    return out")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<fused>", "exec"), namespace)  # bench only, never in src
    return namespace["run"]  # type: ignore[no-any-return]
