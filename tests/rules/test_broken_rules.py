"""Broken rule files: each is refused with one clear, located problem, never a traceback.

Every file under `broken/` breaks one thing (its first line says what). The table gives the
line of the offending key or value and a piece of the message a CS ops person should see.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from csautomation.errors import ConfigFileError, Problem
from csautomation.rules.loader import load_rules
from jargon import JARGON

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
DUPE_DIR = HERE / "broken_dir_dupe"

# file name -> (line of the offending key or value, part of the message)
CASES: dict[str, tuple[int, str]] = {
    "01_bad_yaml_indent.yaml": (4, "check the indentation"),
    "02_bad_yaml_unclosed_bracket.yaml": (7, "expected ',' or ']'"),
    "03_bad_yaml_tab.yaml": (5, "indent with spaces, not tabs"),
    "04_duplicate_yaml_key.yaml": (8, "duplicate key 'priority' (first defined on line 6)"),
    "05_empty_file.yaml": (1, "the file is empty"),
    "06_top_level_list.yaml": (2, "expected a mapping with 'rules:'"),
    "07_missing_rules.yaml": (2, "missing required field 'rules'"),
    "08_empty_rules_list.yaml": (2, "needs at least 1 item, found an empty list"),
    "09_unknown_top_level_field.yaml": (11, "unknown field 'version'; expected one of: rules"),
    "10_unknown_rule_field_near_miss.yaml": (6, "'priorty'; did you mean 'priority'?"),
    "11_missing_required_field.yaml": (3, "missing required field 'owner'"),
    "12_priority_number.yaml": (6, "one of 'critical', 'high', 'medium' or 'low', found 3"),
    "13_enabled_maybe.yaml": (11, "expected true or false, found 'maybe'"),
    "14_cooldown_number.yaml": (11, "found 5; add a unit, e.g. 5d"),
    "15_unknown_priority_value.yaml": (6, "found 'urgent'"),
    "16_unknown_fact_near_miss.yaml": (8, "'health.scor'; did you mean 'health.score'?"),
    "17_unknown_fact_wrong_namespace.yaml": (8, "did you mean 'support.escalations_30d'?"),
    "18_unknown_operator_mapping.yaml": (8, "unknown field 'less_than'; expected one of: between"),
    "19_unknown_operator_compact.yaml": (8, "unknown operator '~'"),
    "20_two_operators.yaml": (8, "has 2 operators (lt, gt)"),
    "21_no_operator.yaml": (8, "comparison on 'health.score' has no operator"),
    "22_operator_not_for_string_fact.yaml": (8, "'lt' (<) does not apply to 'account.tier'"),
    "23_operator_not_for_list_fact.yaml": (8, "use one of contains, exists"),
    "24_string_compared_to_number_fact.yaml": (8, "is a number fact, but is compared with 'high'"),
    "25_number_operator_with_word.yaml": (8, "expected a number, found 'forty'"),
    "26_cooldown_3_days.yaml": (11, "found '3 days'; write 3d"),
    "27_window_within_0d.yaml": (9, "a duration must be longer than zero, found '0d'"),
    "28_window_within_hours.yaml": (9, "window conditions work in whole days"),
    "29_cron_minute_61.yaml": (7, "invalid cron expression '61 * * * *'"),
    "30_cron_wrong_field_count.yaml": (7, "Wrong number of fields; got 4, expected 5"),
    "31_trigger_without_on_or_schedule.yaml": (7, "a trigger needs 'on'"),
    "32_unknown_signal_in_on.yaml": (7, "found 'usage_dialy'; did you mean 'usage_daily'?"),
    "33_empty_all.yaml": (8, "needs at least 1 item, found an empty list"),
    "34_not_with_list.yaml": (9, "a condition is a comparison such as"),
    "35_condition_without_known_key.yaml": (11, "found a mapping with 'when'"),
    "36_between_low_above_high.yaml": (8, "between 80 and 20: the low bound is above the high"),
    "37_window_fell_and_rose.yaml": (9, "exactly one of 'fell_by' or 'rose_by'"),
    "38_signals_at_least_too_big.yaml": (9, "at_least 3 of 2 types can never hold"),
    "39_unknown_action_kind.yaml": (10, "action is one of: start_playbook, escalate, create_task"),
    "40_action_unknown_field.yaml": (10, "unknown field 'due'; did you mean 'due_in'?"),
    "41_escalate_bad_severity.yaml": (10, "found 'urgent'"),
    "42_rule_id_uppercase.yaml": (3, "a rule id uses lower-case letters"),
    "43_rule_id_spaces.yaml": (3, "found 'low health'"),
    "44_trigger_not_a_mapping.yaml": (7, "expected a mapping (field: value), found 'daily'"),
    "45_escalate_not_a_mapping.yaml": (10, "expected a mapping (field: value), found 'high'"),
    "46_missing_window_within.yaml": (9, "missing required field 'within'"),
    "47_nested_bad_value.yaml": (13, "expected a number, found 'low'"),
    "48_number_operator_with_yes.yaml": (8, "'lt' compares numbers, found true"),
    "49_eq_with_mapping.yaml": (8, "expected a number, true or false, or text, found a mapping"),
    "50_window_over_text_fact.yaml": (9, "'health.band' has no numeric daily history"),
    "51_unknown_scope_tier.yaml": (8, "did you mean 'enterprise'?"),
    "52_playbook_unknown_field_near_miss.yaml": (11, "did you mean 'parameters'?"),
    "53_between_one_bound.yaml": (8, "'between' takes two numbers, [low, high]; found [20]"),
    "54_two_condition_kinds_in_one_mapping.yaml": (8, "found a mapping with 'all', 'any'"),
    "55_two_actions_in_one_item.yaml": (10, "(one per list item), found a mapping with 'escalate'"),
    "56_two_yaml_documents.yaml": (11, "expected a single document in the stream"),
    # values outside the fact's domain: never or always true
    "57_value_out_of_domain.yaml": (
        8,
        "'engagement.nps < 0' can never hold: 'engagement.nps' is from 0 to 10",
    ),
    "58_unknown_enum_value.yaml": (8, "is green, yellow or red, never 'crimson'"),
    "59_percent_sign.yaml": (8, "write 90: 'usage.seat_utilization_pct' is already in percent"),
    "60_probability_written_as_percent.yaml": (
        8,
        "can never hold: 'churn.probability' is from 0 to 1; for 70% write 0.7",
    ),
    "61_always_holds.yaml": (8, "holds for every account where the fact is known"),
    "62_window_beyond_range.yaml": (9, "can never fall by 150 (at most 100)"),
    "63_percent_in_mapping.yaml": (8, "found '65%'; write 0.65"),
}


def refusal(paths: list[Path]) -> list[Problem]:
    """The problems `load_rules` reports; any other exception fails the test as is."""
    with pytest.raises(ConfigFileError) as caught:
        load_rules(paths)
    problems = caught.value.problems
    assert problems, "ConfigFileError without problems"
    return problems


def check_first(problems: list[Problem], path: Path, line: int, text: str) -> None:
    first = problems[0]
    shown = "\n".join(str(p) for p in problems)
    assert first.file == str(path), shown
    assert first.line == line, shown
    assert text in first.message, shown
    assert str(first).startswith(f"{path}:{line}:"), shown
    for problem in problems:
        assert not any(word in str(problem) for word in JARGON), shown


def test_every_broken_file_is_in_the_table() -> None:
    on_disk = sorted(p.name for p in BROKEN.glob("*.yaml"))
    assert on_disk == sorted(CASES)
    assert len(CASES) >= 34


@pytest.mark.parametrize(
    ("name", "line", "text"), [(name, *expected) for name, expected in CASES.items()]
)
def test_broken_file_is_refused_with_a_located_message(name: str, line: int, text: str) -> None:
    path = BROKEN / name
    check_first(refusal([path]), path, line, text)


def test_duplicate_rule_id_across_two_files() -> None:
    problems = refusal([DUPE_DIR])
    check_first(problems, DUPE_DIR / "b.yaml", 11, "duplicate rule id 'low-health'")
    assert f"also defined at {DUPE_DIR / 'a.yaml'}:3" in problems[0].message
    assert len(problems) == 1


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("rules:\n  - id: cafe\n    name: Café accounts\n".encode("latin-1"))
    check_first(refusal([path]), path, 3, "file is not UTF-8 text")


VALID = """\
rules:
  - id: usage-decline
    name: Logins down 30% in 30 days
    owner: cs-ops@example.com
    priority: high
    trigger: {on: [usage_daily], schedule: "0 6 * * *"}
    scope: {tiers: [enterprise, mid_market]}
    conditions:
      all:
        - usage.logins_change_30d_pct <= -30
        - {fact: health.score, lt: 70}
        - not: stakeholders.champion_changed == true
        - window: {fact: health.score, fell_by: 15, within: 30d}
        - signals: {of: [support_escalation, meeting, stakeholder_change], at_least: 2, within: 14d}
    cooldown: 14d
    actions:
      - start_playbook: usage-recovery
        parameters: {target_logins_change_pct: -10}
      - escalate: {severity: high}
      - create_task: {subject: "Check usage", due_in: 3d}
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(VALID, encoding="utf-8")
    ruleset = load_rules([path])
    assert [r.id for r in ruleset.rules] == ["usage-decline"]
    rule = ruleset.rules[0].rule
    assert len(rule.conditions.all) == 5
    assert len(rule.actions) == 3


@pytest.mark.parametrize(
    "condition",
    [
        "usage.logins_change_30d_pct <= -30",
        "{fact: health.score, lt: 70}",
        "{not: stakeholders.champion_changed == true}",
        "{window: {fact: health.score, fell_by: 15, within: 30d}}",
        "{signals: {of: [support_escalation, meeting, stakeholder_change], at_least: 2, "
        "within: 14d}}",
        "health.score between 20 and 80",
        "account.tier in [enterprise, smb]",
        "account.tags contains strategic",
        "contract.days_to_renewal exists",
    ],
)
def test_each_condition_form_loads_on_its_own(tmp_path: Path, condition: str) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        rules:
          - id: one
            name: One condition
            owner: cs-ops@example.com
            priority: low
            trigger: {{schedule: "0 6 * * *"}}
            conditions: {condition}
            actions: [{{escalate: {{severity: low}}}}]
        """),
        encoding="utf-8",
    )
    assert [r.id for r in load_rules([path]).rules] == ["one"]
