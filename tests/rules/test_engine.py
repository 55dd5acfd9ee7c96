"""durable_rules (the streaming evaluator) gives explain's answer for every value class: at
each constant a rule compares with, just beside it, between constants, for missing facts,
unseen strings and lists, numbers json writes with exponents. Rulesets grouped by trigger
answer in the rules' order and are asked only about the rules wanted. `matching_many` (many
facts asserted in one call) answers as `matching` does, record by record. The batch path's
vectorised columns hold what norm gives per value."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from csautomation.errors import RuleEngineError
from csautomation.facts.derived import norm
from csautomation.rules.batch import Columns
from csautomation.rules.engine import BATCH, StreamingEvaluator
from csautomation.rules.explain import explain
from factories import compiled_rules as compiled

CONDITIONS: list[Any] = [
    "health.score < 40",
    "health.score <= 40",
    {"all": ["health.score > 39.999999", "health.score <= 95"]},
    {"fact": "health.score", "between": [10, 20.5]},
    {"fact": "health.score", "in": [0, 7, 40]},
    {"fact": "health.score", "not_in": [7, 40]},
    {"not": "health.score == 7"},
    "health.score != 40",
    "health.score exists",
    {"not": "health.score exists"},
    "stakeholders.champion_changed == true",
    {"not": "stakeholders.champion_changed == false"},
    {"fact": "account.tier", "in": ["smb", "enterprise"]},
    {"fact": "account.tier", "not_in": ["smb"]},
    {"all": ["account.tags contains strategic", {"not": "account.tags contains at-risk"}]},
    # several facts: an `any` across two, a `not` over an `all` across two, a bare `any`
    {"all": ["health.band == red", {"any": ["health.score < 30", "churn.probability > 0.9"]}]},
    {"not": {"all": ["health.score > 50", "churn.probability < 0.1"]}},
    {"any": ["health.score > 90", "account.tier == smb", "account.tags contains reference"]},
]

SCORES = [None, -6, -5, -4.999999, 0, 7, 7.000001, 9.5, 10, 15, 20.5, 20.500001, 30]
SCORES += [39.999999, 39.9999995, 40, 40.000001, 50, 90, 90.5, 1e12, -1e12]
TIERS = [None, "smb", "enterprise", "mid_market", "never-seen", 'zoë "q" \\']
BANDS = [None, "red", "green"]
CHURN = [None, 0.05, 0.1, 0.95, 1]
CHAMPION = [None, True, False]
TAGS = [None, ["strategic"], ["strategic", "at-risk"], ["reference"]]


def records() -> list[dict[str, Any]]:
    out = []
    for i, score in enumerate(SCORES):
        for j, tier in enumerate(TIERS):
            rec = {
                "health.score": score,
                "account.tier": tier,
                "health.band": BANDS[(i + j) % len(BANDS)],
                "churn.probability": CHURN[(i * 3 + j) % len(CHURN)],
                "stakeholders.champion_changed": CHAMPION[(i + 2 * j) % len(CHAMPION)],
                "account.tags": TAGS[(2 * i + j) % len(TAGS)],
            }
            out.append({k: norm(v) for k, v in rec.items() if norm(v) is not None})
    return out


def test_every_value_class_matches_as_explain_says() -> None:
    rules = compiled(CONDITIONS)
    ev = StreamingEvaluator(rules, chunk=7)
    recs = records()
    fired = 0
    try:
        for rec in recs:
            want = [r.id for r in rules if explain(r, rec).matched]
            assert ev.matching(rec) == want, rec
            fired += len(want)
        assert ev.pending_facts() == 0
    finally:
        ev.close()
    # the grid reaches both sides of every rule
    for r in rules:
        results = {explain(r, rec).matched for rec in recs}
        assert results == {True, False}, r.id
    assert fired > len(recs)


def test_numbers_with_exponents_and_texts_that_look_like_them() -> None:
    # json writes 1e-06 and 1e+20, which durable_rules' parser refuses; such a body, or a
    # text that merely looks like one, is written again digit by digit
    rules = compiled(
        [
            "churn.probability > 0",
            "churn.probability < 0.000002",
            {"fact": "account.arr", "gt": 1e19},
            "account.segment == e-commerce",
            {"fact": "account.segment", "in": ["NaN", "Infinity", "zoë e+1"]},
        ]
    )
    recs: list[dict[str, Any]] = [
        {"churn.probability": norm(0.000001)},
        {"churn.probability": norm(0.0000004)},
        {"account.arr": norm(1e20), "account.segment": "e-commerce"},
        {"account.arr": norm(1e18), "account.segment": "NaN"},
        {"account.segment": "Infinity", "churn.probability": 0.5},
        {"account.segment": "zoë e+1"},
    ]
    ev = StreamingEvaluator(rules)
    try:
        for rec in recs:
            want = [r.id for r in rules if explain(r, rec).matched]
            assert ev.matching(rec) == want, rec
    finally:
        ev.close()
    assert all(any(explain(r, rec).matched for rec in recs) for r in rules)


def test_rulesets_grouped_by_trigger_answer_in_the_rules_order() -> None:
    rules = compiled(["health.score < 50"] * 5)
    groups = {"r0": "a", "r1": "b", "r2": "a", "r3": "c", "r4": "b"}
    ev = StreamingEvaluator(rules, chunk=1, group=lambda r: groups[r.id])
    low = {"health.score": 10}
    try:
        assert ev.matching(low) == ["r0", "r1", "r2", "r3", "r4"]
        assert [r.id for r in ev.matched(low, ev.mask(["r4", "r0", "r3"]))] == ["r0", "r3", "r4"]
        assert ev.matched(low, 0) == [] and ev.matching({"health.score": 60}) == []
        # a ruleset holding none of the wanted rules is not asked: its fact id never moves
        before = ev._next
        assert [r.id for r in ev.matched(low, ev.mask(["r1"]))] == ["r1"]
        assert ev.matched(low, 0) == [] and ev._next == before + 1
    finally:
        ev.close()


def test_threads_share_one_evaluator() -> None:
    rules = compiled(CONDITIONS)
    ev = StreamingEvaluator(rules)
    recs = records()
    want = [[r.id for r in rules if explain(r, rec).matched] for rec in recs]
    wrong: list[dict[str, Any]] = []

    def run(many: bool) -> None:
        for _ in range(5):
            if many and ev.matching_many(recs) != want:
                wrong.append({"batch": True})
                continue
            for rec, expected in zip(recs, want, strict=True):
                if ev.matching(rec) != expected:
                    wrong.append(rec)

    threads = [threading.Thread(target=run, args=(i % 2 == 0,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        ev.close()
    assert wrong == []


def test_batches_answer_as_one_record_at_a_time() -> None:
    rules = compiled(CONDITIONS)
    ev = StreamingEvaluator(rules, chunk=7)
    recs = records() * 2  # past BATCH: two asserts per ruleset
    assert len(recs) > BATCH
    try:
        got = ev.matching_many(recs)
        assert got == [ev.matching(rec) for rec in recs]
        assert got == [[r.id for r in rules if explain(r, rec).matched] for rec in recs]
        assert ev.matching_many(recs[:3]) == got[:3]  # nothing left behind to match again
        assert ev.matching_many([]) == [] and ev.pending_facts() == 0
    finally:
        ev.close()


def test_batches_ask_each_record_about_its_own_rules() -> None:
    rules = compiled(["health.score < 50"] * 5 + [{"not": "churn.probability exists"}])
    groups = {"r0": "a", "r1": "b", "r2": "a", "r3": "c", "r4": "b", "r5": "c"}
    ev = StreamingEvaluator(rules, chunk=1, group=lambda r: groups[r.id])
    recs = [{"health.score": s} for s in (10, 60, 20, 30)] + [{"churn.probability": 0.5}]
    among = [
        ev.mask(["r4", "r0"]),
        ev.mask(["r0", "r5"]),
        0,
        ev.mask(["r3", "r5"]),
        ev.mask(groups),
    ]
    try:
        got = ev.matched_many(recs, among)
        assert got == [ev.matched(rec, a) for rec, a in zip(recs, among, strict=True)]
        assert [[r.id for r in found] for found in got] == [
            ["r0", "r4"],
            ["r5"],
            [],
            ["r3", "r5"],
            [],
        ]
        assert ev.pending_facts() == 0
    finally:
        ev.close()


def test_a_batch_refused_part_way_raises_and_leaves_no_fact_behind() -> None:
    # 70 rules whose thresholds all hold for a small value: its walk of durable_rules'
    # rule network overflows a fixed stack (error 303) after the facts before it asserted
    ev = StreamingEvaluator(compiled([f"account.arr < {1000 + i}" for i in range(70)]))
    ok, bad, also = {"account.arr": 1065.5}, {"account.arr": 10}, {"account.arr": 1068.5}
    try:
        with pytest.raises(RuleEngineError, match="303"):
            ev.matching_many([ok, bad, also])
        assert ev.pending_facts() == 0
        assert ev.matching_many([ok, also]) == [["r66", "r67", "r68", "r69"], ["r69"]]
    finally:
        ev.close()


AWKWARD: list[Any] = [
    0.30000000000000004,
    0.1 + 0.2,
    1e-7,
    -1e-7,
    39.9999995,
    2.0000005,
    0.0000005,
    1234567890.1234567,
    9.87654321e8 + 0.00000049,
    1e20,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    None,
    True,
    False,
    5,
    2**60 + 1,
    40.125,
]


def test_number_columns_are_normalised_as_norm_does() -> None:
    records = [{"health.score": v} for v in AWKWARD] + [{}]
    got = Columns.from_records(records, ["health.score"]).numbers["health.score"]
    want = np.array(
        [
            np.nan if norm(r.get("health.score")) is None else float(norm(r.get("health.score")))
            for r in records
        ]
    )
    np.testing.assert_array_equal(got, want)  # NaN where missing, equal elsewhere
    assert got[0] == 0.3 and got[2] == 0.0 and np.isnan(got[11])


def test_text_columns_are_coded_as_norm_does() -> None:
    values: list[Any] = ["smb", None, 1.0000001, "enterprise", 1, "smb", float("nan"), True]
    codes, dictionary = Columns.from_records(
        [{"account.tier": v} for v in values] + [{}], ["account.tier"]
    ).strings["account.tier"]
    # norm per value: 1.0000001 and 1 are the same number; NaN is missing; True == 1 as a key
    assert dictionary == {"smb": 0, 1: 1, "enterprise": 2}
    assert codes.tolist() == [0, -1, 1, 2, 1, 0, -1, 1, -1]
