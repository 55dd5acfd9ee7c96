"""A recorded firing's decision, made again from what was recorded.

The ledger keeps, for every firing, the facts the rule read (its explain) and the rule
itself at the version that fired (`rule_versions`). Re-evaluating those facts against that
rule must give the same decision, condition by condition: if it does not, the engine's
meaning of a rule changed under a recorded decision, which an auditor must hear about. The
rule as the files say today is evaluated on the same facts too, so a rule edited since
shows whether it would still have fired.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from csautomation.errors import ConfigFileError, CsAutomationError
from csautomation.rules.explain import Explanation, explain
from csautomation.rules.ir import compile_rule
from csautomation.rules.spec import Rule
from csautomation.settings import Settings
from csautomation.store.engine import table
from csautomation.store.ledger import rule_source
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow


class DecisionError(CsAutomationError):
    pass


@dataclass
class FiringReplay:
    firing_id: int
    rule_id: str
    account_id: str
    version: str
    fired_at: str
    recorded: dict[str, Any]
    again: Explanation
    same: bool
    today: Explanation | None = None  # the rule as the files say now, when it changed
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"firing {self.firing_id}: rule {self.rule_id} (version {self.version}) for "
            f"account {self.account_id} at {self.fired_at}",
            "recorded decision: " + ("fired" if self.recorded.get("matched") else "did not match"),
            "re-evaluated from the recorded facts against the recorded rule version:",
            self.again.render(),
        ]
        if self.same:
            lines.append("verdict: the same decision, condition by condition")
        else:
            lines.append(
                "verdict: DIFFERENT: the recorded rule no longer decides the recorded facts "
                "as it did (the engine's meaning changed)"
            )
        if self.today is not None:
            would = "would also fire" if self.today.matched else "would NOT fire"
            lines.append(
                f"the rule as the files say today (version {self.today.rule_version}) {would} "
                "on the same facts"
            )
        lines += self.notes
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def replay_firing(store: Store, firing_id: int, settings: Settings) -> FiringReplay:
    t = table(RuleFiringRow)
    with store.engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.id == firing_id)).first()
    if row is None:
        raise DecisionError(f"no firing {firing_id} in the store")
    source = rule_source(store, row.rule_version)
    if source is None:
        raise DecisionError(
            f"firing {firing_id}: rule {row.rule_id} version {row.rule_version} was not kept "
            "(it fired before the decision ledger existed); its explain is in `csauto audit`"
        )
    try:
        rule = compile_rule(Rule.model_validate(source))
    except ValidationError as exc:
        raise DecisionError(
            f"firing {firing_id}: the kept rule {row.rule_id} version {row.rule_version} no "
            f"longer validates against today's rule language: {exc.errors()[0]['msg']}"
        ) from None
    notes = []
    if rule.version != row.rule_version:
        notes.append(
            f"note: the kept rule hashes to {rule.version} today, not {row.rule_version}: "
            "the rule language gained a default since"
        )
    recorded = dict(row.explain)
    facts = dict(recorded.get("facts") or {})
    again = explain(rule, facts)
    mine = _plain(again.to_dict())
    same = mine["matched"] == recorded.get("matched") and mine["conditions"] == _plain(
        recorded.get("conditions")
    )
    return FiringReplay(
        firing_id=firing_id,
        rule_id=row.rule_id,
        account_id=row.account_id,
        version=row.rule_version,
        fired_at=str(row.fired_at),
        recorded=recorded,
        again=again,
        same=same,
        today=_today(settings, row.rule_id, row.rule_version, facts, notes),
        notes=notes,
    )


def _today(
    settings: Settings, rule_id: str, version: str, facts: dict[str, Any], notes: list[str]
) -> Explanation | None:
    from csautomation.rules.loader import load_rules

    try:
        current = load_rules([settings.rules_path]).by_id(rule_id)
    except ConfigFileError:
        notes.append(f"note: the rule files in {settings.rules_path} do not load today")
        return None
    if current is None:
        notes.append(f"note: no rule {rule_id} in {settings.rules_path} today")
        return None
    if current.version == version:
        return None
    missing = [k for k in _keys(current) if k not in facts]
    if missing:
        notes.append(
            f"note: today's version reads facts not recorded then ({', '.join(missing)}): "
            "they count as missing"
        )
    return explain(current, facts)


def _keys(rule: Any) -> list[str]:
    from csautomation.rules.ir import fact_keys

    return list(fact_keys(rule.condition))
