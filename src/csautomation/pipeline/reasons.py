"""A rule's own `escalate: {reason: ...}` rendered before the escalation starts, so that
managers read "Renewal at risk at Acme Corp", never its template. (A playbook's escalate
step is rendered by the activity that opens it; a rule's starts the escalation directly.)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from csautomation.pipeline.dispatch import Firing
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.templates import TemplateProblem, context, render

log = logging.getLogger(__name__)

__all__ = ["render_reasons"]


def render_reasons(firing: Firing, store: Store, facts: FactsReader) -> Firing:
    """`firing` with each escalate reason rendered for its account, as of the firing's
    day. A template that fails (a fact gone since the rule was checked) stays as written,
    logged: an escalation must open."""
    if not any("{" in str(_reason(a)) for a in firing.actions):
        return firing
    account = store.account(firing.account_id)
    if account is None:
        return firing
    record = facts.record_or_error(account, firing.at.date())
    seen = context(
        account.model_dump(mode="json"),
        {} if isinstance(record, Exception) else record,  # facts read "not known"
        rule={"id": firing.rule_id, "version": firing.rule_version},
        params={},
        explain=firing.explain,
    )
    actions = []
    for action in firing.actions:
        reason = _reason(action)
        if reason and "{" in reason:
            try:
                reason = render(reason, seen)
            except TemplateProblem as exc:
                log.warning("rule %s: reason %r not rendered: %s", firing.rule_id, reason, exc)
            action = {**action, "escalate": {**action["escalate"], "reason": reason}}
        actions.append(action)
    return replace(firing, actions=tuple(actions))


def _reason(action: dict[str, Any]) -> str:
    escalate = action.get("escalate")
    return str(escalate.get("reason") or "") if isinstance(escalate, dict) else ""
