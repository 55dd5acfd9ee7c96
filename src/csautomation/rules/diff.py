"""What changed between two versions of the rules, in words a CS ops person reads in a review:
"conditions: was `health.score < 40`, now `health.score < 50`"."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import TypeAdapter

from csautomation.config import format_duration
from csautomation.rules import spec
from csautomation.rules.loader import RuleSet

__all__ = ["FieldChange", "RuleChange", "Status", "condition_text", "diff_rulesets"]

Status = Literal["added", "removed", "changed", "unchanged"]

_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str

    def text(self) -> str:
        return f"{self.field}: was `{self.before}`, now `{self.after}`"


@dataclass(frozen=True)
class RuleChange:
    rule_id: str
    status: Status
    changes: tuple[FieldChange, ...] = ()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _duration(value: timedelta) -> str:
    # in days, as rules are mostly written (7d, not 1w); a part of a day as format_duration
    return (
        f"{value.days}d"
        if value and value == timedelta(days=value.days)
        else format_duration(value)
    )


def _comparison(c: spec.Comparison) -> str:
    op, value = c.op, c.value
    if op == "exists":
        return f"{c.fact} exists"
    if op == "between":
        return f"{c.fact} between {_value(value[0])} and {_value(value[1])}"
    if op in ("in", "not_in", "contains"):
        return f"{c.fact} {op.replace('_', ' ')} {_value(value)}"
    return f"{c.fact} {_SYMBOL[op]} {_value(value)}"


def _group(items: list[Any], joiner: str, nested: bool) -> str:
    text = f" {joiner} ".join(condition_text(c, nested=True) for c in items)
    return f"({text})" if nested and len(items) > 1 else text


def condition_text(cond: Any, nested: bool = False) -> str:
    """A condition in one line: `a and (b or c)`, windows and signal counts in words."""
    if isinstance(cond, spec.AllCondition):
        return _group(cond.all, "and", nested)
    if isinstance(cond, spec.AnyCondition):
        return _group(cond.any, "or", nested)
    if isinstance(cond, spec.NotCondition):
        return f"not ({condition_text(cond.not_)})"
    if isinstance(cond, spec.WindowCondition):
        w = cond.window
        verb, amount = ("fell", w.fell_by) if w.fell_by is not None else ("rose", w.rose_by)
        return f"{w.fact} {verb} by {_value(amount)} within {_duration(w.within)}"
    if isinstance(cond, spec.SignalsCondition):
        s = cond.signals
        kinds = _value([t.value for t in s.of])
        counted = "of the types" if s.counting == "types" else "signals of"
        return f"at least {s.at_least} {counted} {kinds} within {_duration(s.within)}"
    if isinstance(cond, spec.Comparison):
        return _comparison(cond)
    raise TypeError(f"not a condition: {cond!r}")


def _scope(scope: spec.Scope) -> str:
    parts = [
        f"{name} {', '.join(values)}"
        for name, values in (
            ("tenants", scope.tenants),
            ("tiers", [t.value for t in scope.tiers]),
            ("segments", scope.segments),
            ("regions", scope.regions),
        )
        if values
    ]
    return "; ".join(parts) or "all accounts"


def _trigger(trigger: spec.Trigger) -> str:
    parts = [f"on {', '.join(t.value for t in trigger.on)}"] if trigger.on else []
    if trigger.schedule:
        parts.append(f"schedule '{trigger.schedule}'")
    return "; ".join(parts)


def _action(action: Any) -> str:
    if isinstance(action, spec.StartPlaybook):
        params = ", ".join(f"{k}={_value(v)}" for k, v in sorted(action.parameters.items()))
        return f"start playbook {action.start_playbook}" + (f" ({params})" if params else "")
    if isinstance(action, spec.Escalate):
        e = action.escalate
        return f"escalate {e.severity}" + (f" '{e.reason}'" if e.reason else "")
    t = action.create_task
    return (
        f"create task '{t.subject}' for the {t.assignee}, due in {_duration(t.due_in)}, "
        f"{t.priority.value}"
    )


FIELDS: tuple[tuple[str, Callable[[spec.Rule], str]], ...] = (
    ("enabled", lambda r: "true" if r.enabled else "false"),
    ("conditions", lambda r: condition_text(r.conditions)),
    ("priority", lambda r: r.priority.value),
    ("cooldown", lambda r: _duration(r.cooldown)),
    ("scope", lambda r: _scope(r.scope)),
    ("trigger", lambda r: _trigger(r.trigger)),
    ("actions", lambda r: "; ".join(_action(a) for a in r.actions)),
    ("name", lambda r: r.name),
    ("owner", lambda r: r.owner),
    ("description", lambda r: r.description.strip()),
)


def _dump(value: Any) -> str:
    dumped = TypeAdapter(Any).dump_python(value, mode="json", by_alias=True)
    return json.dumps(dumped, sort_keys=True)


def rule_changes(before: spec.Rule, after: spec.Rule) -> tuple[FieldChange, ...]:
    """Each field that differs, in words; in the file's own terms (JSON) where the words
    leave out what changed (a task's description, a connector)."""
    changes = []
    for name, words in FIELDS:
        if getattr(before, name) == getattr(after, name):
            continue
        old, new = words(before), words(after)
        if old == new:
            old, new = _dump(getattr(before, name)), _dump(getattr(after, name))
        changes.append(FieldChange(name, old, new))
    return tuple(changes)


def diff_rulesets(before: RuleSet, after: RuleSet) -> list[RuleChange]:
    """Every rule id of either version, in the order of the new version then the removed."""
    old = {r.id: r.rule for r in before.rules}
    new = {r.id: r.rule for r in after.rules}
    out: list[RuleChange] = []
    for rule_id, rule in new.items():
        if rule_id not in old:
            out.append(RuleChange(rule_id, "added"))
            continue
        changes = rule_changes(old[rule_id], rule)
        out.append(RuleChange(rule_id, "changed" if changes else "unchanged", changes))
    out.extend(RuleChange(rule_id, "removed") for rule_id in old if rule_id not in new)
    return out
