"""A playbook's conditions evaluated again on the facts a run read, for its timeline.

The playbook workflow reads fresh facts before a branch, a goal check or a `wait_for`
condition, and the history keeps what it read (the facts-read marker's result) beside the
playbook itself (the run's input). Evaluated here on those facts with the same evaluator
the workflow uses, each condition shows which facts it read, their values and which way it
went; a decision made on other values than recorded would be a divergence for `replay`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from csautomation.playbooks.spec import Playbook, Step
from csautomation.rules.explain import SYMBOL, Check, holds, leaf_holds
from csautomation.rules.ir import And, Leaf, Node, Not, Or, leaves, lower


@dataclass(frozen=True)
class Decision:
    condition: str  # the condition in words: "usage.logins_change_30d_pct > -10"
    holds: bool
    checks: list[str]  # each fact read, with its value and whether its comparison held


def playbook_of(started_input: dict[str, Any]) -> Playbook | None:
    """The playbook a run executed, from its input; None when the input is not one that
    today's playbook language reads (then the timeline shows no conditions)."""
    try:
        return Playbook.model_validate(started_input.get("playbook") or {})
    except ValidationError:
        return None


def step_of(playbook: Playbook | None, step_id: str) -> Step | None:
    if playbook is None:
        return None
    return next((s for s in playbook.steps if s.id == step_id), None)


def decide(condition: Any, facts: dict[str, Any]) -> Decision:
    node = lower(condition, {})
    checks = []
    for leaf in leaves(node):
        actual = facts.get(leaf.key)
        ok = leaf_holds(leaf.op, actual, leaf.value)
        mark = "✔" if ok else "✘"
        checks.append(f"{mark} {Check(leaf.key, leaf.op, leaf.value, actual, ok).text()}")
    return Decision(words(node), holds(node, facts), checks)


def said(condition: Any) -> str:
    """A playbook condition as people write it."""
    return words(lower(condition, {}))


def words(node: Node) -> str:
    """A lowered condition as people write it."""
    if isinstance(node, Leaf):
        if node.op == "exists":
            return f"{node.key} exists"
        value = node.value
        if node.op == "between":
            return f"{node.key} between {_value(value[0])} and {_value(value[1])}"
        if isinstance(value, tuple):
            return f"{node.key} {SYMBOL[node.op]} {json.dumps(list(value), default=str)}"
        return f"{node.key} {SYMBOL[node.op]} {_value(value)}"
    if isinstance(node, Not):
        return f"not ({words(node.item)})"
    joiner = " and " if isinstance(node, And) else " or "
    assert isinstance(node, And | Or)
    return joiner.join(
        f"({words(i)})" if isinstance(i, And | Or) and len(i.items) > 1 else words(i)
        for i in node.items
    )


def _value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)
