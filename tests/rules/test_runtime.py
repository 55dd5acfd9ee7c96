"""The rule runtime: every match fires, priority order, cooldowns, triggers, hot reload."""

from __future__ import annotations

import logging
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csautomation.errors import RuleEngineError
from csautomation.facts.health import load_health_model
from csautomation.rules.engine import StreamingEvaluator
from csautomation.rules.ir import CompiledRule
from csautomation.rules.loader import load_rules
from csautomation.rules.runtime import (
    NOTHING,
    SCHEDULE,
    Evaluation,
    MemoryCooldowns,
    RuleRuntime,
    ToEvaluate,
)
from factories import compiled_rules

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


def rule_yaml(
    rule_id: str,
    condition: str,
    priority: str = "high",
    cooldown: str = "7d",
    on: str = "[usage_daily]",
) -> str:
    return textwrap.dedent(f"""\
      - id: {rule_id}
        name: {rule_id}
        owner: ops
        priority: {priority}
        trigger: {{on: {on}, schedule: "0 6 * * *"}}
        conditions: "{condition}"
        cooldown: {cooldown}
        actions: [{{start_playbook: p}}]
    """)


def write_rules(folder: Path, *rules: str, name: str = "r.yaml") -> Path:
    folder.mkdir(exist_ok=True)
    body = "rules:\n" + "".join(textwrap.indent(r, "  ") for r in rules)
    (folder / name).write_text(body, encoding="utf-8")
    return folder


@pytest.fixture
def model():  # type: ignore[no-untyped-def]
    return load_health_model()


def test_one_fact_fires_every_matching_rule_in_priority_order(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    folder = write_rules(
        tmp_path / "rules",
        rule_yaml("low-one", "health.score < 50", priority="low"),
        rule_yaml("crit-one", "health.score < 40", priority="critical"),
        rule_yaml("high-one", "health.score < 60"),
        rule_yaml("never", "health.score > 90"),
    )
    rt = RuleRuntime([folder], model)
    ev = rt.evaluate_record("A", {"health.score": 30}, AT, trigger="usage_daily")
    # durable_rules' events would fire only the first match; asserting facts fires all three
    assert [m.rule_id for m in ev.fired] == ["crit-one", "high-one", "low-one"]
    assert ev.fired[0].explanation.facts == {"health.score": 30}


def test_cooldown_suppresses_repeats_per_account(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    folder = write_rules(tmp_path / "rules", rule_yaml("r", "health.score < 50", cooldown="7d"))
    rt = RuleRuntime([folder], model)
    rec = {"health.score": 10}
    assert len(rt.evaluate_record("A", rec, AT, "usage_daily").fired) == 1
    again = rt.evaluate_record("A", rec, AT + timedelta(days=6, hours=23), "usage_daily")
    assert again.fired == () and len(again.suppressed) == 1
    assert len(rt.evaluate_record("B", rec, AT, "usage_daily").fired) == 1  # other account
    assert len(rt.evaluate_record("A", rec, AT + timedelta(days=7), "usage_daily").fired) == 1


def test_triggers_select_rules(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    folder = write_rules(
        tmp_path / "rules",
        rule_yaml("on-usage", "health.score < 50"),
        rule_yaml("on-nps", "health.score < 50", on="[nps_response]"),
    )
    rt = RuleRuntime([folder], model)
    rec = {"health.score": 10}
    assert [m.rule_id for m in rt.evaluate_record("A", rec, AT, "nps_response").fired] == ["on-nps"]
    assert {m.rule_id for m in rt.evaluate_record("B", rec, AT, SCHEDULE).fired} == {
        "on-usage",
        "on-nps",
    }


def test_rule_files_reload_without_restart(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    folder = write_rules(tmp_path / "rules", rule_yaml("r", "health.score < 50"))
    rt = RuleRuntime([folder], model, reload_interval=0)
    rec = {"health.score": 55}
    assert rt.evaluate_record("A", rec, AT, None).fired == ()
    write_rules(folder, rule_yaml("r", "health.score < 60"))
    # mtime granularity can hide a rewrite within the same tick; size changed here anyway
    assert [m.rule_id for m in rt.evaluate_record("A", rec, AT, None).fired] == ["r"]
    version_before = rt.ruleset.rules[0].version
    # a broken edit keeps the last good rules serving, and says why
    (folder / "r.yaml").write_text("rules: [", encoding="utf-8")
    assert not rt.reload_if_changed(force=True)
    assert rt.last_error is not None and "r.yaml:1" in str(rt.last_error)
    assert rt.ruleset.rules[0].version == version_before
    assert [m.rule_id for m in rt.evaluate_record("B", rec, AT, None).fired] == ["r"]


def test_a_reload_names_the_rules_it_changed_and_a_broken_file_is_reported_once(
    tmp_path: Path,
    model,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    folder = write_rules(
        tmp_path / "rules", rule_yaml("a", "health.score < 50"), rule_yaml("b", "health.score < 5")
    )
    rt = RuleRuntime([folder], model, reload_interval=0)
    try:
        old = {r.id: r.version for r in rt.ruleset.rules}
        write_rules(folder, rule_yaml("b", "health.score < 5"), rule_yaml("c", "health.score < 60"))
        assert rt.reload_if_changed()
        new = {r.id: r.version for r in rt.ruleset.rules}
        assert new["b"] == old["b"]
        reloads = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert reloads == [f"reloaded rules: a (removed), c version {new['c']} (new)"]

        (folder / "r.yaml").write_text("rules: [", encoding="utf-8")
        for _ in range(3):  # looked at again and again, said once
            assert not rt.reload_if_changed()
        [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "rule files changed but do not validate; the last good rules serve" in warning
        assert f"{folder / 'r.yaml'}:1:" in warning
        assert {r.id for r in rt.ruleset.rules} == {"b", "c"}
    finally:
        rt.close()


def test_disabled_rules_do_not_fire(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    text = rule_yaml("r", "health.score < 50") + "  enabled: false\n"
    folder = write_rules(tmp_path / "rules", text)
    rt = RuleRuntime([folder], model)
    assert rt.evaluate_record("A", {"health.score": 1}, AT, None).fired == ()


def test_two_hundred_rules_lose_no_matches() -> None:
    # durable_rules loses matches above ~100 rules per ruleset; chunking keeps them all
    compiled = compiled_rules([f"health.score < {i % 50 + 10}" for i in range(200)])
    ev = StreamingEvaluator(compiled)
    try:
        for score in (5, 20, 45, 70):
            got = set(ev.matching({"health.score": score}))
            want = {f"r{i}" for i in range(200) if score < i % 50 + 10}
            assert got == want
    finally:
        ev.close()


def test_shipped_rules_load_and_each_has_a_version() -> None:
    ruleset = load_rules([Path(__file__).parents[2] / "rules"])
    assert len(ruleset.rules) >= 8
    assert len({r.version for r in ruleset.rules}) == len(ruleset.rules)


def test_evaluations_leave_no_facts_behind() -> None:
    compiled = compiled_rules(["health.score < 50", {"not": "churn.probability exists"}])
    ev = StreamingEvaluator(compiled, chunk=1)
    try:
        for score in range(100):
            expected = {"r1"} | ({"r0"} if score < 50 else set())
            assert set(ev.matching({"health.score": score})) == expected
            # the same record again matches again: it was retracted, not de-duplicated
            assert set(ev.matching({"health.score": score})) == expected
        assert ev.pending_facts() == 0
    finally:
        ev.close()


def test_explanations_are_built_when_read_and_only_for_matches(  # type: ignore[no-untyped-def]
    tmp_path: Path, model, monkeypatch
) -> None:
    from csautomation.rules import runtime as runtime_module

    folder = write_rules(
        tmp_path / "rules",
        rule_yaml("hit", "health.score < 50"),
        rule_yaml("miss", "health.score > 90"),
    )
    rt = RuleRuntime([folder], model)
    explained: list[str] = []
    real = runtime_module.explain

    def counting(rule: CompiledRule, record: Any) -> Any:
        explained.append(rule.id)
        return real(rule, record)

    monkeypatch.setattr(runtime_module, "explain", counting)
    ev = rt.evaluate_record("A", {"health.score": 30}, AT, "usage_daily")
    assert [m.rule_id for m in ev.fired] == ["hit"] and explained == []
    why = ev.fired[0].explanation
    assert why is ev.fired[0].explanation  # built once
    assert explained == ["hit"] and why.matched
    assert "health.score < 50 (value: 30)" in why.render()
    assert ev.fired[0].to_dict()["explain"]["facts"] == {"health.score": 30}


def test_a_set_of_signal_types_wakes_the_rules_of_each(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    folder = write_rules(
        tmp_path / "rules",
        rule_yaml("on-usage", "health.score < 50", priority="low"),
        rule_yaml("on-nps", "health.score < 50", on="[nps_response]", priority="critical"),
        rule_yaml("on-both", "health.score < 50", on="[nps_response, usage_daily]"),
    )
    rt = RuleRuntime([folder], model)
    rec = {"health.score": 10}

    def fired(trigger: Any) -> list[str]:
        return [m.rule_id for m in rt.evaluate_record("A", rec, AT, trigger, False).fired]

    assert fired({"nps_response", "usage_daily"}) == ["on-nps", "on-both", "on-usage"]
    assert fired(["usage_daily"]) == ["on-both", "on-usage"]
    assert fired("nps_response") == ["on-nps", "on-both"]
    assert fired({"support_ticket"}) == [] and fired([]) == []
    assert fired(None) == ["on-nps", "on-both", "on-usage"]  # priority order, then id


def test_evaluations_during_reloads_use_one_whole_rule_set(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    # a reload deletes the old rule set's durable_rules rulesets: an evaluation already
    # under way finishes on the old set first, and none asserts into a deleted one
    low, high = rule_yaml("r", "health.score < 50"), rule_yaml("r", "health.score < 60")
    folder = write_rules(tmp_path / "rules", low)
    rt = RuleRuntime([folder], model, reload_interval=3600)
    rec = {"health.score": 55}
    answers: set[tuple[str, ...]] = set()
    failures: list[BaseException] = []
    stop = threading.Event()

    def evaluate() -> None:
        while not stop.is_set():
            try:
                ev = rt.evaluate_record("A", rec, AT, "usage_daily", apply_cooldown=False)
            except BaseException as exc:  # reported by the test, not swallowed
                failures.append(exc)
                return
            answers.add(tuple(m.rule_id for m in ev.fired))

    threads = [threading.Thread(target=evaluate) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            # the two bodies differ in size, so the fingerprint changes within one tick
            write_rules(folder, high if i % 2 == 0 else low)
            rt.reload_if_changed(force=True)  # this thread's, or an evaluation's, swaps it
            ev = rt.evaluate_record("B", rec, AT, "usage_daily", apply_cooldown=False)
            assert [m.rule_id for m in ev.fired] == (["r"] if i % 2 == 0 else []), i
    finally:
        stop.set()
        for t in threads:
            t.join()
        rt.close()
    assert failures == []
    assert answers == {(), ("r",)}


def test_records_evaluated_together_answer_as_one_at_a_time(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    # 70 thresholds that all hold for a small ARR: durable_rules refuses that record
    # (error 303), which fails its batch; each record is then asked alone
    big = [rule_yaml(f"arr{i}", f"account.arr < {1000 + i}") for i in range(70)]
    nps = rule_yaml("nps", "health.score < 50", priority="critical", on="[nps_response]")
    folder = write_rules(tmp_path / "rules", rule_yaml("low", "health.score < 50"), nps, *big)
    rt, alone = RuleRuntime([folder], model), RuleRuntime([folder], model)
    items = [
        ToEvaluate("A", {"health.score": 30}, AT, "usage_daily"),
        ToEvaluate("B", {"health.score": 30, "account.arr": 1068.5}, AT, {"nps_response"}),
        ToEvaluate("A", {"health.score": 20}, AT + timedelta(days=1), "usage_daily"),
        ToEvaluate("C", {"health.score": 30, "account.arr": 10}, AT, "usage_daily"),
        ToEvaluate("D", {"health.score": 90}, AT, None),
    ]
    try:
        got = rt.evaluate_records(items)
        assert isinstance(got[3], RuleEngineError) and "303" in str(got[3])
        with pytest.raises(RuleEngineError):
            alone.evaluate_record(*items[3])
        for i in (0, 1, 2, 4):
            want = alone.evaluate_record(*items[i])
            result = got[i]
            assert isinstance(result, Evaluation)
            assert [m.rule_id for m in result.fired] == [m.rule_id for m in want.fired], i
            assert [m.rule_id for m in result.suppressed] == [m.rule_id for m in want.suppressed]
        assert [[m.rule_id for m in e] for e in got[2]] == [[], ["low"]]  # A's cooldown
        assert [m.rule_id for m in got[1].fired] == ["nps"]  # its trigger's rules only
        assert got[4] == NOTHING
        assert rt.evaluate_records([]) == []
    finally:
        rt.close()
        alone.close()


def test_a_record_whose_cooldowns_fail_is_held_alone(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    # the cooldown store fails for one account: that record's evaluation is its exception,
    # the others of the pass are evaluated (before, the whole pass would have failed)
    folder = write_rules(tmp_path / "rules", rule_yaml("low", "health.score < 50"))

    class Failing(MemoryCooldowns):
        def last_fired(self, rule_id: str, account_id: str) -> datetime | None:
            if account_id == "BAD":
                raise ValueError("a cooldown row that cannot be read")
            return super().last_fired(rule_id, account_id)

    rt = RuleRuntime([folder], model)
    items = [
        ToEvaluate("A", {"health.score": 30}, AT, "usage_daily"),
        ToEvaluate("BAD", {"health.score": 30}, AT, "usage_daily"),
        ToEvaluate("C", {"health.score": 30}, AT, "usage_daily"),
    ]
    try:
        got = rt.evaluate_records(items, cooldowns=Failing())
        assert isinstance(got[1], ValueError)
        for i in (0, 2):
            result = got[i]
            assert isinstance(result, Evaluation) and [m.rule_id for m in result.fired] == ["low"]
    finally:
        rt.close()
