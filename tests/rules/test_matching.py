"""`StreamingEvaluator.matching()` names each rule once, in the rules' order: durable_rules
fires a rule once per branch of an `any` that holds, and callers count what it returns."""

from __future__ import annotations

from typing import Any

from csautomation.rules.batch import BatchEvaluator, Columns
from csautomation.rules.engine import StreamingEvaluator
from csautomation.rules.explain import explain
from factories import compiled_rules as compiled

# r0 and r2 have `any`s whose every branch holds on RECORD; r3's negated `all` becomes an
# `any` of four branches (two negated leaves, each "or missing"), two of which hold
CONDITIONS: list[Any] = [
    {"any": ["health.score < 50", "health.score < 40", "churn.probability > 0.5"]},
    "health.score < 30",
    {"any": [{"all": ["health.score < 20", "churn.probability > 0.8"]}, "health.score < 15"]},
    {"not": {"all": ["health.score > 50", "churn.probability < 0.1"]}},
    {"any": ["health.score > 90", "churn.probability < 0.2"]},  # holds on neither branch
]
RECORD = {"health.score": 10, "churn.probability": 0.9}


def test_a_rule_whose_any_holds_on_several_branches_is_named_once() -> None:
    rules = compiled(CONDITIONS)
    for chunk in (1, 2, 40):  # rules split over rulesets, or all in one
        ev = StreamingEvaluator(rules, chunk=chunk)
        try:
            got = ev.matching(RECORD)
            assert ev.matching(RECORD) == got  # the same again: nothing left behind
        finally:
            ev.close()
        assert got == ["r0", "r1", "r2", "r3"], chunk


def test_matching_agrees_with_the_batch_path_and_explain() -> None:
    rules = compiled(CONDITIONS)
    records = [RECORD, {"health.score": 45}, {"churn.probability": 0.05}, {}]
    ev = StreamingEvaluator(rules, chunk=2)
    try:
        stream = [ev.matching(r) for r in records]
    finally:
        ev.close()
    batch = BatchEvaluator(rules)
    masks = batch.evaluate(Columns.from_records(records, batch.keys))
    for i, record in enumerate(records):
        by_explain = [r.id for r in rules if explain(r, record).matched]
        by_batch = [r.id for r in rules if masks[r.id][i]]
        assert stream[i] == by_explain == by_batch, record
    assert stream[1] == ["r0", "r3"]  # 45 < 50 alone; no churn fact, so `not all` holds
