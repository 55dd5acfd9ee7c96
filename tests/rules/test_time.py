"""One meaning for time (rules/README.md, "Time: days, windows and the evaluation instant"),
at its boundaries and through every path: derive (streaming) and derive_records (batch)
give equal facts, and durable_rules, the batch evaluator, the backtest's columns and
explain give equal matches.

The rule: days are UTC days; "N days ago" is the evaluation day minus the signal's day; a
window of N days (`within: Nd`, every `_Nd` fact) holds the days 0 to N-1 ago. An evaluation
at an instant T reads the signals up to T; one as of a day reads the whole day.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.days import AsOf, end_of_day, evaluation_day, utc_day
from csautomation.facts.derive import derive
from csautomation.facts.derive_many import derive_records
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.rules import spec
from csautomation.rules.backtest import frames_to_columns
from csautomation.rules.batch import BatchEvaluator, Columns
from csautomation.rules.engine import StreamingEvaluator
from csautomation.rules.explain import explain
from csautomation.rules.ir import CompiledRule, compile_rule
from factories import account

END = date(2026, 11, 1)
NOON = time(12)
MODEL = load_health_model()
ACME = account()
EST = timezone(timedelta(hours=-5))


def at(ago: int, when: time = NOON, day: date = END) -> datetime:
    return datetime.combine(day - timedelta(days=ago), when, tzinfo=UTC)


def signal(kind: str, moment: datetime, **payload: Any) -> Signal:
    return Signal(type=kind, account_id=ACME.id, occurred_at=moment, payload=payload)


def quiet_usage(day: date = END, days: int = 200) -> list[Signal]:
    """Daily usage with no logins: history enough for every window, and nothing to count."""
    return [
        signal("usage_daily", at(back, day=day), logins=0, active_users=0) for back in range(days)
    ]


def rule(rule_id: str, condition: Any) -> CompiledRule:
    return compile_rule(
        spec.Rule.model_validate(
            {
                "id": rule_id,
                "name": rule_id,
                "owner": "test",
                "priority": "high",
                "trigger": {"on": ["usage_daily"]},
                "conditions": condition,
                "actions": [{"create_task": {"subject": "look"}}],
            }
        )
    )


def facts(signals: list[Signal], as_of: AsOf, rules: list[CompiledRule]) -> dict[str, Any]:
    """The account's facts at `as_of`, the same from derive and from derive_records."""
    extra = list({d.key: d for r in rules for d in r.derived}.values())
    record = derive(ACME, signals, as_of, MODEL, extra).record()
    [many] = derive_records([(ACME, signals, as_of)], MODEL, extra)
    assert many == record
    return record


def matches(signals: list[Signal], as_of: AsOf, rules: list[CompiledRule]) -> dict[str, bool]:
    """Each rule's match at `as_of`, asserted equal through every evaluation path."""
    record = facts(signals, as_of, rules)
    streaming = StreamingEvaluator(rules)
    try:
        stream = set(streaming.matching(record))
    finally:
        streaming.close()
    batch = BatchEvaluator(rules)
    masks = batch.evaluate(Columns.from_records([record], batch.keys))
    out = {r.id: r.id in stream for r in rules}
    for r in rules:
        assert bool(masks[r.id][0]) == out[r.id] == explain(r, record).matched, r.id
    if not isinstance(as_of, datetime):  # the backtest reads days: the frame's last one
        extra = list({d.key: d for r in rules for d in r.derived}.values())
        frame = derive(ACME, signals, as_of, MODEL, extra, start=as_of - timedelta(days=2))
        days = BatchEvaluator(rules).evaluate(frames_to_columns([frame], batch.keys))
        assert {r.id: bool(days[r.id][-1]) for r in rules} == out
    return out


# -- the days ago on either side of every window's edge --------------------------------------
EDGES = sorted({n + d for n in (1, 7, 14, 30, 90) for d in (-1, 0, 1) if n + d >= 0})

# fact, window in days, the value one signal of `kinds(ago)` gives it inside the window
COUNTS = [
    ("usage.logins_7d", 7, 5),
    ("usage.logins_30d", 30, 5),
    ("usage.feature_events_30d", 30, 3),
    ("support.tickets_30d", 30, 1),
    ("support.urgent_tickets_30d", 30, 1),
    ("support.escalations_30d", 30, 1),
    ("support.escalations_90d", 90, 1),
    ("engagement.meetings_attended_90d", 90, 1),
    ("engagement.meetings_missed_90d", 90, 1),
    ("expansion.interest_90d", 90, 1),
    ("stakeholders.champion_changed", 90, True),
    ("stakeholders.exec_sponsor_changed", 90, True),
]
DAYS_AGO = [
    "stakeholders.champion_changed_days_ago",
    "usage.days_since_last_login",
    "engagement.days_since_last_meeting",
]


def one_of_each(ago: int) -> list[Signal]:
    moment = at(ago)
    return [
        signal("usage_daily", moment, logins=5, active_users=0, feature_events=3),
        signal("support_ticket", moment, priority="urgent"),
        signal("support_escalation", moment),
        signal("meeting", moment, status="attended"),
        signal("meeting", moment, status="missed"),
        signal("expansion_interest", moment),
        signal("stakeholder_change", moment, role="champion", change="left"),
        signal("stakeholder_change", moment, role="exec_sponsor", change="left"),
    ]


@pytest.mark.parametrize("ago", EDGES)
def test_every_n_day_fact_holds_the_days_0_to_n_minus_1_ago(ago: int) -> None:
    rules = [rule(f"fact-{i}", f"{key} exists") for i, (key, _, _) in enumerate(COUNTS)]
    windows = {
        n: rule(
            f"signals-{n}d",
            {"signals": {"of": ["support_escalation"], "at_least": 1, "within": f"{n}d"}},
        )
        for n in (1, 7, 14, 30, 90)
    }
    rules += [
        *windows.values(),
        rule("true-90d", "stakeholders.champion_changed == true"),
        rule("tickets-30d", "support.tickets_30d >= 1"),
    ]
    record = facts(quiet_usage() + one_of_each(ago), END, rules)
    for key, days, inside in COUNTS:
        assert record[key] == (inside if ago < days else 0), (key, ago)  # 0 to days-1 ago
    for key in DAYS_AGO:
        assert record[key] == ago, key
    got = matches(quiet_usage() + one_of_each(ago), END, rules)
    for n, r in windows.items():
        assert got[r.id] == (ago < n), (n, ago)
    assert got["true-90d"] == (ago < 90)
    assert got["tickets-30d"] == (ago < 30)


@pytest.mark.parametrize("ago", [0, 13, 14, 15])
def test_signals_within_counts_occurrences_and_types_alike(ago: int) -> None:
    history = [
        *quiet_usage(),
        signal("support_escalation", at(0)),
        signal("support_escalation", at(ago)),
        signal("meeting", at(ago), status="attended"),
    ]
    rules = [
        rule(
            "twice",
            {
                "signals": {
                    "of": ["support_escalation"],
                    "at_least": 2,
                    "within": "14d",
                    "counting": "occurrences",
                }
            },
        ),
        rule(
            "both",
            {"signals": {"of": ["support_escalation", "meeting"], "at_least": 2, "within": "14d"}},
        ),
    ]
    assert matches(history, END, rules) == {"twice": ago < 14, "both": ago < 14}


@pytest.mark.parametrize("ago", [1, 13, 14, 15])
def test_a_window_compares_today_with_the_days_0_to_n_minus_1_ago(ago: int) -> None:
    """Seats were 50 until `ago` days ago and 10 since (or the reverse): a change still
    inside the 14-day window is a fall (a rise) of 40; one 14 days ago is not."""

    def seats(before: int, after: int) -> list[Signal]:
        return [
            *quiet_usage(),
            signal("contract_update", at(300), seats=before),
            signal("contract_update", at(ago - 1), seats=after),
        ]

    rules = [
        rule("fell", {"window": {"fact": "account.seats", "fell_by": 40, "within": "14d"}}),
        rule("rose", {"window": {"fact": "account.seats", "rose_by": 40, "within": "14d"}}),
    ]
    assert matches(seats(50, 10), END, rules) == {"fell": ago < 14, "rose": False}
    assert matches(seats(10, 50), END, rules) == {"fell": False, "rose": ago < 14}


def test_a_champion_who_left_14_days_ago_is_outside_14d_and_inside_15d() -> None:
    """The README's example, word for word."""
    history = [
        *quiet_usage(),
        signal("stakeholder_change", at(14), role="champion", change="left"),
    ]
    rules = [
        rule(
            f"within-{n}d",
            {"signals": {"of": ["stakeholder_change"], "at_least": 1, "within": f"{n}d"}},
        )
        for n in (14, 15)
    ]
    assert facts(history, END, rules)["stakeholders.champion_changed_days_ago"] == 14
    assert matches(history, END, rules) == {"within-14d": False, "within-15d": True}


def test_trends_compare_with_the_value_n_days_ago() -> None:
    """`health.trend_30d` and the other "now minus N days ago" facts read the day N days
    back itself (which a window of N days just leaves out)."""
    history = [
        *quiet_usage(),
        signal("contract_update", at(300), seats=50),
        signal("contract_update", at(29), seats=10),  # 50 on the day 30 days ago, 10 since
        signal("churn_prediction", at(300), probability=0.2),
        signal("churn_prediction", at(29), probability=0.5),
    ]
    record = facts(history, END, [])
    assert record["churn.probability_change_30d"] == 0.3
    rules = [rule("fell", {"window": {"fact": "account.seats", "fell_by": 40, "within": "30d"}})]
    assert matches(history, END, rules) == {"fell": False}


def readme_table() -> list[list[str]]:
    """The rows of the boundary table in rules/README.md's section on time."""
    text = (Path(__file__).parents[2] / "rules" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Time: days, windows and the evaluation instant", 1)[1]
    lines = section.split("\n## ", 1)[0].splitlines()
    rows = [[c.strip(" `") for c in line.strip("|").split("|")] for line in lines]
    return [r for r in rows if len(r) == 5 and r[0][:4].isdigit()]


def test_the_readme_boundary_table_holds() -> None:
    rows = readme_table()
    assert len(rows) >= 5
    evaluated = date(2026, 11, 15)
    rules = [
        rule(
            f"within-{n}d",
            {"signals": {"of": ["support_escalation"], "at_least": 1, "within": f"{n}d"}},
        )
        for n in (14, 15)
    ]
    for written, day, ago, in_14d, in_15d in rows:
        late = signal("support_escalation", datetime.fromisoformat(written))
        assert late.day.day == int(day.split()[0]), written
        assert (evaluated - late.day).days == int(ago), written
        want = {"within-14d": in_14d == "yes", "within-15d": in_15d == "yes"}
        assert matches([*quiet_usage(evaluated), late], evaluated, rules) == want, written


# -- time zones -------------------------------------------------------------------------------
def test_a_signal_at_23_30_minus_5_counts_on_the_next_utc_day() -> None:
    late = signal("support_escalation", datetime(2026, 10, 31, 23, 30, tzinfo=EST))
    assert late.day == date(2026, 11, 1) == utc_day(late.occurred_at)
    assert late.occurred_at == datetime(2026, 11, 1, 4, 30, tzinfo=UTC)
    assert late.occurred_at.utcoffset() == timedelta(0)  # kept in UTC, the same instant
    history = [*quiet_usage(date(2026, 11, 20)), late]
    within = [
        rule(
            "within-14d",
            {"signals": {"of": ["support_escalation"], "at_least": 1, "within": "14d"}},
        )
    ]
    for as_of, hit in [
        (date(2026, 10, 31), False),  # not yet: it is the 1st in UTC
        (date(2026, 11, 1), True),  # 0 days ago
        (date(2026, 11, 14), True),  # 13 days ago
        (date(2026, 11, 15), False),  # 14 days ago
        (datetime(2026, 10, 31, 23, 29, tzinfo=EST), False),  # a minute before it
        (datetime(2026, 10, 31, 23, 30, tzinfo=EST), True),  # at it: occurred_at <= T
    ]:
        assert matches(history, as_of, within) == {"within-14d": hit}, as_of
    record = facts(history, date(2026, 11, 14), within)
    assert record["support.escalations_30d"] == 1
    assert facts(history, date(2026, 10, 31), within)["support.escalations_30d"] == 0


def test_a_signal_keeps_its_key_and_needs_a_utc_day() -> None:
    """Kept in UTC, a signal keeps the idempotency key of the moment as written (as stored
    before: a redelivery is still a duplicate); a moment with no UTC date is refused."""
    written = datetime(2026, 10, 31, 23, 30, tzinfo=EST)
    late = signal("support_escalation", written)
    text = f"support_escalation|{ACME.id}|{written.isoformat()}|[]"
    assert late.idempotency_key == hashlib.sha256(text.encode()).hexdigest()[:32]
    assert Signal.model_validate(late.model_dump()) == late
    with pytest.raises(ValidationError, match="outside the years 1 to 9999 in UTC") as info:
        signal("support_escalation", datetime(9999, 12, 31, 23, tzinfo=EST))
    assert info.value.errors()[0]["loc"] == ("occurred_at",)


def test_the_evaluation_day_of_an_instant_is_its_utc_day() -> None:
    assert evaluation_day(datetime(2026, 10, 31, 23, 30, tzinfo=EST)) == date(2026, 11, 1)
    assert evaluation_day(
        datetime(2026, 11, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    ) == date(2026, 10, 31)
    assert evaluation_day(END) == END


# -- the evaluation instant -------------------------------------------------------------------
def test_a_day_is_read_at_its_end_and_an_instant_up_to_itself() -> None:
    last = signal("support_escalation", datetime.combine(END, time(23, 59, 30), tzinfo=UTC))
    history = [*quiet_usage(), last]
    today = [
        rule("today", {"signals": {"of": ["support_escalation"], "at_least": 1, "within": "1d"}})
    ]
    assert end_of_day(END) + timedelta(microseconds=1) == datetime.combine(
        END + timedelta(days=1), time(0), tzinfo=UTC
    )
    for as_of, hit in [
        (END, True),  # as of the day: every signal of it
        (end_of_day(END), True),
        (datetime.combine(END, time(23, 59), tzinfo=UTC), False),  # the old hard-coded minute
        (last.occurred_at, True),
        (last.occurred_at - timedelta(microseconds=1), False),
        (END + timedelta(days=1), False),  # a day later: 1 day ago, outside 1d
    ]:
        assert matches(history, as_of, today) == {"today": hit}, as_of


RULE_FILE = """\
rules:
  - id: escalated-today
    name: Escalated today
    owner: cs-ops@example.com
    priority: high
    trigger: {on: [support_escalation]}
    conditions:
      signals: {of: [support_escalation], at_least: 1, within: 1d}
    actions:
      - create_task: {subject: "Call {{ account.name }}"}
"""


def test_csauto_rules_as_of_reads_the_whole_utc_day(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "today.yaml").write_text(RULE_FILE)
    (tmp_path / "accounts.jsonl").write_text(ACME.model_dump_json() + "\n")
    late = signal("support_escalation", datetime(2026, 11, 1, 18, 59, 30, tzinfo=EST))
    history = [*quiet_usage(date(2026, 11, 3)), late]  # 23:59:30 UTC on the 1st
    (tmp_path / "signals.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in history))
    data = ["--rules", str(tmp_path / "rules"), "--accounts", str(tmp_path / "accounts.jsonl")]
    data += ["--signals", str(tmp_path / "signals.jsonl")]
    runner = CliRunner()
    for day, hit in (("2026-10-31", False), ("2026-11-01", True), ("2026-11-02", False)):
        result = runner.invoke(
            app, ["rules", "evaluate", *data, "--as-of", day, "--format", "json"]
        )
        assert result.exit_code == 0, result.output
        fired = json.loads(result.output)
        assert [m["rule_id"] for m in fired] == (["escalated-today"] if hit else []), day
        if hit:
            assert fired[0]["at"] == end_of_day(END).isoformat()
        result = runner.invoke(
            app,
            [
                "rules",
                "explain",
                "escalated-today",
                ACME.id,
                *data,
                "--as-of",
                day,
                "--format",
                "json",
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["matched"] is hit, day
