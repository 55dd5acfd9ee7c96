"""bench/rules: the shipped rule shapes scaled to R rules against N account records.

Measures records/s and rule checks/s for csautomation's streaming path (durable_rules, one
record at a time) and batch path (numpy over columns), and in the same run the same rules and
records through zen-engine (GoRules decision table, collect hit policy, `evaluate` per record)
and a plain-Python fused code-generated function (the per-record ceiling). All four must find
the same matches.

    .venv/bin/python bench/rules.py [--n 100000] [--rules 10,50,200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import zen

from csautomation.facts.derived import norm
from csautomation.rules import spec
from csautomation.rules.batch import BatchEvaluator, Columns
from csautomation.rules.ir import And, CompiledRule, Leaf, Node, Not, Or, compile_rule
from csautomation.rules.matcher import StreamingEvaluator

TIERS = ["enterprise", "mid_market", "smb"]


def shapes(rnd: random.Random, i: int) -> Any:
    """The eight shipped rule shapes, thresholds varied so each matches ~1-5% of records."""
    k = i % 8
    if k == 0:
        return {
            "all": [
                f"usage.logins_change_30d_pct <= {rnd.randint(-70, -55)}",
                f"health.score < {rnd.randint(40, 70)}",
            ]
        }
    if k == 1:
        return {
            "all": [
                "health.band == red",
                {
                    "any": [
                        f"health.trend_30d <= {rnd.randint(-16, -12)}",
                        f"usage.seat_utilization_pct < {rnd.randint(6, 9)}",
                    ]
                },
            ]
        }
    if k == 2:
        return {
            "all": [
                f"health.trend_30d <= {rnd.randint(-28, -22)}",
                {"fact": "account.tier", "in": rnd.sample(TIERS, 2)},
            ]
        }
    if k == 3:
        return {
            "all": [
                f"support.escalations_30d >= {rnd.randint(2, 3)}",
                f"support.urgent_tickets_30d >= {rnd.randint(2, 5)}",
            ]
        }
    if k == 4:
        lo = rnd.randint(0, 30)
        return {
            "all": [
                {"fact": "contract.days_to_renewal", "between": [lo, lo + 30]},
                f"health.score < {rnd.randint(35, 55)}",
            ]
        }
    if k == 5:
        return {
            "all": [
                "stakeholders.champion_changed == true",
                {"fact": "account.tier", "not_in": [rnd.choice(TIERS)]},
                f"health.score < {rnd.randint(50, 80)}",
            ]
        }
    if k == 6:
        return {
            "all": [
                f"churn.probability >= 0.{rnd.randint(95, 99)}",
                {"not": {"fact": "account.region", "eq": rnd.choice(["emea", "apac"])}},
            ]
        }
    return {
        "all": [
            f"usage.seat_utilization_pct >= {rnd.randint(93, 97)}",
            f"health.score >= {rnd.randint(60, 75)}",
            {"not": f"churn.probability > 0.{rnd.randint(2, 4)}"},
            {"fact": "account.segment", "ne": "retail"},
        ]
    }


def build_rules(r: int, seed: int = 1) -> list[CompiledRule]:
    rnd = random.Random(seed)
    return [
        compile_rule(
            spec.Rule.model_validate(
                {
                    "id": f"r{i:03d}",
                    "name": f"rule {i}",
                    "owner": "bench",
                    "priority": "medium",
                    "trigger": {"on": ["usage_daily"]},
                    "conditions": shapes(rnd, i),
                    "actions": [{"start_playbook": "p"}],
                }
            )
        )
        for i in range(r)
    ]


def build_records(n: int, seed: int = 2) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        score = rnd.uniform(0, 100)
        rec: dict[str, Any] = {
            "account.tier": rnd.choice(TIERS),
            "account.region": rnd.choice(["emea", "amer", "apac"]),
            "account.segment": rnd.choice(["saas", "retail", "fintech"]),
            "health.score": round(score, 2),
            "health.band": "green" if score >= 70 else "yellow" if score >= 45 else "red",
            "health.trend_30d": round(rnd.gauss(0, 10), 2),
            "usage.logins_change_30d_pct": round(rnd.gauss(-5, 25), 2),
            "usage.seat_utilization_pct": round(rnd.uniform(5, 100), 2),
            "support.escalations_30d": rnd.choices([0, 1, 2, 3, 4], [70, 15, 8, 5, 2])[0],
            "support.urgent_tickets_30d": rnd.randint(0, 8),
            "contract.days_to_renewal": rnd.randint(-10, 365),
            "stakeholders.champion_changed": rnd.random() < 0.05,
            "churn.probability": round(rnd.random(), 3),
        }
        for key in list(rec):  # a few percent of facts missing, as with thin history
            if key.startswith(("health.trend", "usage.", "churn.")) and rnd.random() < 0.03:
                del rec[key]
        out.append({k: norm(v) for k, v in rec.items()})
    return out


# ---- peers ----------------------------------------------------------------------------------


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


def zen_evaluator(rules: list[CompiledRule]) -> Callable[[dict[str, Any]], set[str]]:
    """One decision table: a column per fact (unary cells for a rule's top-level
    comparisons, as a CS ops author would write them) and one expression column for
    nested any/not, which a decision table cannot put in a single cell of a fact column."""
    keys = sorted({leaf.key for r in rules for leaf in _top_leaves(r.condition)})
    inputs = [{"id": f"c{i}", "name": k, "field": _col(k)} for i, k in enumerate(keys)]
    inputs.append({"id": "x", "name": "nested"})
    column = {k: f"c{i}" for i, k in enumerate(keys)}
    table_rules = []
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
        table_rules.append(row)
    table = {
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
                    "rules": table_rules,
                },
            },
            {"id": "out", "type": "outputNode", "name": "Response", "position": {"x": 0, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "sourceId": "in", "targetId": "t", "type": "edge"},
            {"id": "e2", "sourceId": "t", "targetId": "out", "type": "edge"},
        ],
    }
    data = json.dumps(table)
    engine = zen.ZenEngine({"loader": lambda _key: data})

    def run(record: dict[str, Any]) -> set[str]:
        ctx = {_col(k): v for k, v in record.items()}
        return {hit["rule"] for hit in engine.evaluate("rules", ctx)["result"]}

    return run


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


def fused_evaluator(rules: list[CompiledRule]) -> Callable[[dict[str, Any]], list[str]]:
    lines = ["def run(r):", "    out = []"]
    for rule in rules:
        lines.append(f"    if {_py(rule.condition)}: out.append({rule.id!r})")
    lines.append("    return out")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<fused>", "exec"), namespace)  # bench only, never in src
    return namespace["run"]  # type: ignore[no-any-return]


# ---- measurement --------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rules", default="10,50,200")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    records = build_records(args.n)
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}; N = {args.n:,} records, median of {args.repeat} after warm-up"
    )
    header = (
        f"{'R':>4} {'engine':<34} {'records/s':>12} {'checks/s':>14} {'vs zen':>7} {'vs fused':>9}"
    )
    for r in [int(x) for x in args.rules.split(",")]:
        measure(r, records, args.repeat, header)


def measure(r: int, records: list[dict[str, Any]], repeat: int, header: str) -> None:
    """Time the four engines on R rules and check that they find the same matches."""
    n = len(records)
    rules = build_rules(r)
    stream = StreamingEvaluator(rules)
    batch = BatchEvaluator(rules)
    zen_run = zen_evaluator(rules)
    fused = fused_evaluator(rules)
    cols = Columns.from_records(records, batch.keys)
    t_stream, m_stream = timed(lambda: [set(stream.matching(x)) for x in records], repeat)
    t_batch, masks = timed(lambda: batch.evaluate(cols), repeat)
    t_batch_conv, _ = timed(
        lambda: batch.evaluate(Columns.from_records(records, batch.keys)), repeat
    )
    t_zen, m_zen = timed(lambda: [zen_run(x) for x in records], repeat)
    t_fused, m_fused = timed(lambda: [set(fused(x)) for x in records], repeat)
    stream.close()
    m_batch = [set() for _ in records]
    for rule_id, mask in masks.items():
        for i in mask.nonzero()[0]:
            m_batch[i].add(rule_id)
    mismatches = sum(
        1
        for a, b, c, d in zip(m_stream, m_batch, m_zen, m_fused, strict=True)
        if not a == b == c == set(d)
    )
    matched = sum(len(m) for m in m_fused)
    print(
        f"\nR = {r}: {matched:,} matches ({matched / n / r:.1%} of rule checks), "
        f"mismatches between the four: {mismatches}"
    )
    print(header)
    for name, t in (
        ("csautomation streaming (durable_rules)", t_stream),
        ("csautomation batch (numpy)", t_batch),
        ("csautomation batch incl. columns", t_batch_conv),
        ("zen-engine decision table", t_zen),
        ("plain Python fused (ceiling)", t_fused),
    ):
        rate = n / t
        line = (
            f"{r:>4} {name:<34} {rate:>12,.0f} {rate * r:>14,.0f} "
            f"{t_zen / t:>6.2f}x {t_fused / t:>8.2f}x"
        )
        print(line)
    if r in (50, 200):
        print(
            f"goal streaming >= zen-engine at R={r}: "
            f"{'met' if t_stream <= t_zen else 'NOT met'} ({t_zen / t_stream:.2f}x)"
        )
    if r == 200:
        rate = n / t_batch
        print(
            f"goal batch >= 1,000,000 records/s at R=200: "
            f"{'met' if rate >= 1e6 else 'NOT met'} ({rate:,.0f})"
        )
    assert mismatches == 0, "engines disagree"


if __name__ == "__main__":
    main()
