"""The rule language's schema (pydantic). `csauto rules schema` exports it as JSON Schema.

A rule file holds `rules:`, a list of rules. A condition is one of:
  - a compact comparison string:          "health.score < 40"
  - a comparison mapping:                 {fact: health.score, lt: 40}
  - all / any / not nesting:              {all: [...]}, {any: [...]}, {not: ...}
  - a window over a fact's history:       {window: {fact: health.score, fell_by: 15, within: 30d}}
  - a count of signals in a window:       {signals: {of: [a, b, c], at_least: 2, within: 14d}}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic.types import JsonValue

from csautomation.config import Duration
from csautomation.facts.catalog import FACTS, FactType, unknown_fact_message
from csautomation.facts.model import SignalType, Tier
from csautomation.rules.compact import parse_compact
from csautomation.rules.domain import domain_problem, percent_fix, window_problem
from csautomation.templates import Template


def _check_days(value: timedelta) -> timedelta:
    if value.total_seconds() % 86400:
        raise ValueError("window conditions work in whole days (e.g. 14d or 2w)")
    if value.days > 365:
        raise ValueError("a window longer than 365d is not kept in history")
    return value


Days = Annotated[Duration, AfterValidator(_check_days)]


def _check_cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(
            f"invalid cron expression '{value}' (minute hour day-of-month month day-of-week, "
            f"in UTC): {exc}"
        ) from None
    return value


Cron = Annotated[str, AfterValidator(_check_cron)]


_ALL_FACTS: list[JsonValue] = [*sorted(FACTS)]
_NUMBER_FACTS: list[JsonValue] = [p for p in _ALL_FACTS if FACTS[str(p)].type == FactType.number]


class Priority(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


PRIORITY_RANK = {Priority.critical: 0, Priority.high: 1, Priority.medium: 2, Priority.low: 3}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Scalar = float | int | bool | str
NUMBER_OPS = ("lt", "lte", "gt", "gte")
_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}
OPS = ("lt", "lte", "gt", "gte", "eq", "ne", "in", "not_in", "between", "exists", "contains")
OPS_BY_TYPE: dict[FactType, tuple[str, ...]] = {
    FactType.number: ("lt", "lte", "gt", "gte", "eq", "ne", "in", "not_in", "between", "exists"),
    FactType.string: ("eq", "ne", "in", "not_in", "exists"),
    FactType.boolean: ("eq", "ne", "exists"),
    FactType.list: ("contains", "exists"),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Comparison(Strict):
    """One comparison of a fact with a constant: exactly one operator."""

    fact: str = Field(
        description="dotted fact path, e.g. health.score", json_schema_extra={"enum": _ALL_FACTS}
    )
    lt: float | None = None
    lte: float | None = None
    gt: float | None = None
    gte: float | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    between: tuple[float, float] | None = None
    exists: Literal[True] | None = None
    contains: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _numbers_stay_numbers(cls, data: Any) -> Any:
        # YAML gives bools for yes/no; a bool where a number is compared is a mistake.
        if isinstance(data, dict):
            bounds = data.get("between")
            if bounds is not None and not (isinstance(bounds, list | tuple) and len(bounds) == 2):
                raise ValueError(f"'between' takes two numbers, [low, high]; found {bounds!r}")
            for op in NUMBER_OPS:
                given = data.get(op)
                if isinstance(given, str) and re.fullmatch(r"-?\d+(\.\d+)?%", given.strip()):
                    fd = FACTS.get(str(data.get("fact")))
                    raise ValueError(f"found '{given}'; {percent_fix(fd, given.strip()[:-1])}")
                if isinstance(data.get(op), bool):
                    raise ValueError(
                        f"'{op}' compares numbers, found {str(data[op]).lower()} "
                        "(YAML reads yes/no and on/off as true/false)"
                    )
        return data

    @model_serializer(mode="wrap")
    def _only_the_operator(self, handler: SerializerFunctionWrapHandler) -> Any:
        # {fact, op} only: a dump reads like the YAML and validates back (e.g. in workflows).
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def op(self) -> str:
        return next(op for op in OPS if getattr(self, "in_" if op == "in" else op) is not None)

    @property
    def value(self) -> Any:
        return getattr(self, "in_" if self.op == "in" else self.op)

    @model_validator(mode="after")
    def _one_operator(self) -> Comparison:
        given = [op for op in OPS if getattr(self, "in_" if op == "in" else op) is not None]
        if not given:
            raise ValueError(
                f"comparison on '{self.fact}' has no operator; add one of {', '.join(OPS)}"
            )
        if len(given) > 1:
            raise ValueError(
                f"comparison on '{self.fact}' has {len(given)} operators ({', '.join(given)}); "
                "write one comparison per operator inside 'all'"
            )
        if self.fact not in FACTS:
            raise ValueError(unknown_fact_message(self.fact))
        ftype = FACTS[self.fact].type
        op, value = given[0], self.value
        if op not in OPS_BY_TYPE[ftype]:
            raise ValueError(
                f"'{op}'{f' ({_SYMBOL[op]})' if op in _SYMBOL else ''} does not apply to "
                f"'{self.fact}', a {ftype} fact; "
                f"use one of {', '.join(OPS_BY_TYPE[ftype])}"
            )
        values = value if op in ("in", "not_in") else [value]
        if op == "between" and value[0] > value[1]:
            raise ValueError(
                f"between {value[0]:g} and {value[1]:g}: the low bound is above the high one"
            )
        if op in ("eq", "ne", "in", "not_in"):
            want: Callable[[Any], bool] = {
                FactType.number: _is_number,
                FactType.string: lambda v: isinstance(v, str),
                FactType.boolean: lambda v: isinstance(v, bool),
            }[ftype]
            bad = [v for v in values if not want(v)]
            if bad:
                raise ValueError(
                    f"'{self.fact}' is a {ftype} fact, but is compared with {bad[0]!r}"
                )
        problem = domain_problem(FACTS[self.fact], op, value)
        if problem:
            raise ValueError(problem)
        return self


def _compact(value: Any) -> Any:
    if isinstance(value, str):
        return parse_compact(value)
    return value


CompactComparison = Annotated[
    Comparison,
    BeforeValidator(_compact),
    WithJsonSchema(
        {
            "type": "string",
            "description": "compact form, e.g. 'health.score < 40'",
            "pattern": r"^\s*[a-z_]+\.[a-z0-9_]+\s*(<|<=|>|>=|==|!=|in|not in|between|"
            r"contains|exists)",
        }
    ),
]


class WindowSpec(Strict):
    fact: str = Field(
        description="a numeric fact with daily history, e.g. health.score",
        json_schema_extra={"enum": _NUMBER_FACTS},
    )
    fell_by: float | None = Field(default=None, gt=0, description="fell at least this much")
    rose_by: float | None = Field(default=None, gt=0, description="rose at least this much")
    within: Days

    @model_validator(mode="after")
    def _check(self) -> WindowSpec:
        if (self.fell_by is None) == (self.rose_by is None):
            raise ValueError("a window needs exactly one of 'fell_by' or 'rose_by'")
        if self.fact not in FACTS:
            raise ValueError(unknown_fact_message(self.fact))
        fd = FACTS[self.fact]
        if fd.type != FactType.number or not fd.series:
            raise ValueError(f"'{self.fact}' has no numeric daily history to window over")
        change = self.fell_by if self.fell_by is not None else self.rose_by
        assert change is not None
        problem = window_problem(fd, change, "fall" if self.fell_by is not None else "rise")
        if problem:
            raise ValueError(problem)
        return self


class WindowCondition(Strict):
    window: WindowSpec


class SignalsSpec(Strict):
    of: list[SignalType] = Field(min_length=1, description="signal types to look for")
    at_least: int = Field(ge=1)
    within: Days
    counting: Literal["types", "occurrences"] = Field(
        default="types",
        description="types: how many of the listed types occurred at least once; "
        "occurrences: how many signals of those types occurred",
    )

    @model_validator(mode="after")
    def _check(self) -> SignalsSpec:
        if len(set(self.of)) != len(self.of):
            raise ValueError("'of' lists a signal type twice")
        if self.counting == "types" and self.at_least > len(self.of):
            raise ValueError(f"at_least {self.at_least} of {len(self.of)} types can never hold")
        return self


class SignalsCondition(Strict):
    signals: SignalsSpec


class AllCondition(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(Strict):
    not_: Condition = Field(alias="not")


_KINDS = ("all", "any", "not", "window", "signals", "fact")


def _tag(kind: str | None) -> str | None:
    """Union tags appear in pydantic error locations next to real keys ('window', 'window');
    a tag that cannot be a key lets config.source tell them apart."""
    return f"<{kind}>" if kind else None


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return _tag("fact")
    if isinstance(value, dict):
        # none, or two kinds in one mapping ({all: ..., any: ...}): not a condition
        found = [kind for kind in _KINDS if kind in value]
        return _tag(found[0]) if len(found) == 1 else None
    if isinstance(value, BaseModel):
        kinds: dict[type, str] = {
            AllCondition: "all",
            AnyCondition: "any",
            NotCondition: "not",
            WindowCondition: "window",
            SignalsCondition: "signals",
            Comparison: "fact",
        }
        return _tag(kinds.get(type(value)))
    return None


Condition = Annotated[
    Annotated[AllCondition, Tag("<all>")]
    | Annotated[AnyCondition, Tag("<any>")]
    | Annotated[NotCondition, Tag("<not>")]
    | Annotated[WindowCondition, Tag("<window>")]
    | Annotated[SignalsCondition, Tag("<signals>")]
    | Annotated[CompactComparison, Tag("<fact>")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is a comparison such as 'health.score < 40', "
        "or a mapping with one of: all, any, not, fact, window, signals (one per mapping)",
    ),
]


class Trigger(Strict):
    on: list[SignalType] = Field(
        default_factory=list, description="signal types that wake the rule"
    )
    schedule: Cron | None = Field(default=None, description="cron expression (UTC) for sweeps")

    @model_validator(mode="after")
    def _check(self) -> Trigger:
        if not self.on and self.schedule is None:
            raise ValueError("a trigger needs 'on' (signal types), 'schedule' (cron), or both")
        return self


class Scope(Strict):
    tenants: list[str] = Field(default_factory=list)
    tiers: list[Tier] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)


class StartPlaybook(Strict):
    start_playbook: str = Field(min_length=1, description="playbook id in workflows/")
    parameters: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)


class EscalateSpec(Strict):
    severity: Literal["critical", "high", "medium", "low"]
    reason: Template = Field(
        default="", description="a template, e.g. 'Low health at {{ account.name }}'"
    )


class Escalate(Strict):
    escalate: EscalateSpec


class TaskSpec(Strict):
    """A task in the account's CRM: a rule's `create_task` action and a playbook's
    `create_task` step are this one model (`playbooks.spec.TaskStep`), so a rule's task
    keeps every field a step has (connector, priority, due date, ...)."""

    connector: str | None = Field(default=None, description="connector id; default per config")
    assignee: Literal["owner", "manager"] = "owner"
    subject: Template = Field(min_length=1)
    description: Template = ""
    due_in: Duration = timedelta(days=3)
    priority: Priority = Priority.medium


class CreateTask(Strict):
    create_task: TaskSpec


def _action_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [kind for kind in ("start_playbook", "escalate", "create_task") if kind in value]
        return _tag(found[0]) if len(found) == 1 else None
    kinds: dict[type, str] = {
        StartPlaybook: "start_playbook",
        Escalate: "escalate",
        CreateTask: "create_task",
    }
    return _tag(kinds.get(type(value)))


Action = Annotated[
    Annotated[StartPlaybook, Tag("<start_playbook>")]
    | Annotated[Escalate, Tag("<escalate>")]
    | Annotated[CreateTask, Tag("<create_task>")],
    Discriminator(
        _action_kind,
        custom_error_type="action",
        custom_error_message="an action is one of: start_playbook, escalate, create_task "
        "(one per list item)",
    ),
]


_RULE_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def _check_rule_id(value: str) -> str:
    if not re.fullmatch(_RULE_ID, value):
        raise ValueError(
            f"a rule id uses lower-case letters, digits, '-' and '_' only (no spaces, at most "
            f"64 characters), e.g. 'usage-decline'; found {value!r}"
        )
    return value


RuleId = Annotated[
    str, AfterValidator(_check_rule_id), WithJsonSchema({"type": "string", "pattern": _RULE_ID})
]


class Rule(Strict):
    id: RuleId = Field(description="stable id, kebab-case")
    name: str = Field(min_length=1)
    description: str = ""
    owner: str = Field(min_length=1, description="who answers for this rule")
    enabled: bool = True
    priority: Priority
    trigger: Trigger
    scope: Scope = Field(default_factory=Scope)
    conditions: Condition
    cooldown: Duration = Field(default=timedelta(days=7), description="per account")
    actions: list[Action] = Field(min_length=1)


class RuleFile(Strict):
    rules: list[Rule] = Field(min_length=1)


for _m in (AllCondition, AnyCondition, NotCondition):
    _m.model_rebuild()
