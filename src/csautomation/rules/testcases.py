"""Rule test cases authored beside the rules (`rules/tests/*.yaml`), run by `csauto rules test`.

    tests:
      - rule: usage-decline
        name: logins down 40% fires
        trigger: usage_daily            # optional: also checks the rule wakes on it
        facts: {usage.logins_change_30d_pct: -40, health.score: 55}
        expect: fires                   # or: does_not_fire
      - rule: champion-left
        name: from a signal history
        history:
          account: {tier: enterprise}   # fields over a default test account
          signals:
            - {type: usage_daily, days_ago: "60-0", payload: {logins: 50, active_users: 20}}
            - {type: stakeholder_change, days_ago: 10, payload: {role: champion, change: left}}
        expect: fires

Each case runs through both evaluation paths (durable_rules and the vectorised batch path)
and fails if they disagree. A history the account or signal schemas refuse (a payload
with `logins: lots`) is a located problem of the case file, as a misspelt field is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from csautomation.config import Document, YamlSyntaxError, load_file, validation_problems
from csautomation.errors import ConfigFileError, Problem
from csautomation.facts.catalog import FACTS, unknown_fact_message
from csautomation.facts.derive import derive
from csautomation.facts.derived import norm
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.rules.batch import BatchEvaluator, Columns
from csautomation.rules.engine import StreamingEvaluator
from csautomation.rules.explain import Explanation, explain
from csautomation.rules.loader import RuleSet
from csautomation.rules.runtime import triggered

AS_OF = date(2026, 11, 1)
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistorySignal(_Strict):
    type: SignalType
    days_ago: int | str = Field(description="days before as_of, or an inclusive range '60-31'")
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("days_ago")
    @classmethod
    def _days(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, str) and _RANGE.match(value):
            return value
        raise ValueError(f"days_ago is a number of days or a range like '60-31', found {value!r}")

    def days(self) -> list[int]:
        if isinstance(self.days_ago, int):
            return [self.days_ago]
        m = _RANGE.match(self.days_ago)
        assert m
        a, b = int(m.group(1)), int(m.group(2))
        return list(range(max(a, b), min(a, b) - 1, -1))


class History(_Strict):
    account: dict[str, Any] = Field(default_factory=dict)
    as_of: date = AS_OF
    signals: list[HistorySignal] = Field(default_factory=list)


class Case(_Strict):
    rule: str
    name: str
    trigger: SignalType | Literal["schedule"] | None = None
    facts: dict[str, Any] | None = None
    history: History | None = None
    expect: Literal["fires", "does_not_fire"]

    @model_validator(mode="after")
    def _one_source(self) -> Case:
        if (self.facts is None) == (self.history is None):
            raise ValueError("a test case needs exactly one of 'facts' or 'history'")
        for key in self.facts or {}:
            if key not in FACTS and ":" not in key:
                raise ValueError(unknown_fact_message(key))
        return self


class CaseFile(_Strict):
    tests: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    file: str
    line: int
    case: Case
    passed: bool
    reason: str
    explanation: Explanation | None


def default_account(overrides: dict[str, Any]) -> Account:
    base: dict[str, Any] = {
        "id": "TEST",
        "name": "Test Account",
        "tier": "enterprise",
        "arr": 120000,
        "seats": 50,
        "owner": "csm-01",
        "manager": "mgr-01",
        "renewal_date": date(2027, 6, 1),
        "customer_since": date(2023, 1, 1),
    }
    return Account.model_validate(base | overrides)


def history_signals(history: History, account_id: str) -> list[Signal]:
    out = []
    for i, hs in enumerate(history.signals):
        for ago in hs.days():
            day = history.as_of - timedelta(days=ago)
            out.append(
                Signal(
                    type=hs.type,
                    account_id=account_id,
                    payload=hs.payload,
                    occurred_at=datetime.combine(day, time(12), tzinfo=UTC),
                    idempotency_key=f"test:{i}:{ago}",
                )
            )
    return out


def load_cases(paths: list[Path]) -> list[tuple[str, int, Case]]:
    problems: list[Problem] = []
    cases: list[tuple[str, int, Case]] = []
    for path in paths:
        try:
            doc = load_file(path)
        except YamlSyntaxError as exc:
            problems.append(exc.problem)
            continue
        try:
            parsed = CaseFile.model_validate(doc.data or {})
        except ValidationError as exc:
            problems.extend(validation_problems(doc, exc))
            continue
        for i, case in enumerate(parsed.tests):
            if case.history is not None:
                problems.extend(_history_problems(doc, i, case.history))
            cases.append((str(path), doc.position(("tests", i))[0], case))
    if problems:
        raise ConfigFileError(problems)
    return cases


def _history_problems(doc: Document, index: int, history: History) -> list[Problem]:
    """Where the account and signal schemas refuse case `index`'s history, located."""
    at = ("tests", index, "history")
    try:
        account = default_account(history.account)
    except ValidationError as exc:  # only fields the case gives can be wrong
        return validation_problems(doc, exc, (*at, "account"), model=Account)
    problems: list[Problem] = []
    moment = datetime.combine(history.as_of, time(12), tzinfo=UTC)
    for j, hs in enumerate(history.signals):
        try:
            Signal(type=hs.type, account_id=account.id, payload=hs.payload, occurred_at=moment)
        except ValidationError as exc:
            problems.extend(validation_problems(doc, exc, (*at, "signals", j)))
    return problems


def run_case(ruleset: RuleSet, model: HealthModel, file: str, line: int, case: Case) -> CaseResult:
    rule = ruleset.by_id(case.rule)
    if rule is None:
        return CaseResult(file, line, case, False, f"no rule with id '{case.rule}'", None)
    if case.facts is not None:
        record = {k: norm(v) for k, v in case.facts.items() if norm(v) is not None}
    else:
        assert case.history is not None
        account = default_account(case.history.account)
        signals = history_signals(case.history, account.id)
        record = derive(account, signals, case.history.as_of, model, rule.derived).record()
    streaming = StreamingEvaluator([rule])
    try:
        stream_hit = rule.id in streaming.matching(record)
    finally:
        streaming.close()
    batch = BatchEvaluator([rule])
    batch_hit = bool(batch.evaluate(Columns.from_records([record], batch.keys))[rule.id][0])
    why = explain(rule, record)
    if not (stream_hit == batch_hit == why.matched):
        return CaseResult(
            file,
            line,
            case,
            False,
            f"evaluation paths disagree: durable_rules={stream_hit}, "
            f"batch={batch_hit}, explain={why.matched}",
            why,
        )
    fires = stream_hit and (case.trigger is None or triggered(rule, case.trigger))
    want = case.expect == "fires"
    if fires == want:
        return CaseResult(file, line, case, True, "", why)
    if stream_hit and not fires:
        reason = f"conditions hold, but the rule does not wake on '{case.trigger}'"
    else:
        reason = "expected it to fire, but it did not" if want else "expected no fire, but it fired"
    return CaseResult(file, line, case, False, reason, why)


def case_files(rule_paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in rule_paths:
        folder = p / "tests" if p.is_dir() else p.parent / "tests"
        out.extend(sorted(folder.glob("*.y*ml")))
    return sorted(set(out))
