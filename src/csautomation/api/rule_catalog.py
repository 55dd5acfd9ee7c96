"""The rules the pages describe: those the rule files hold now, and those that fired once
but are no longer in the files (shown as they were at their latest version that fired,
which the store keeps in `rule_versions`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy import select

from csautomation.rules import spec
from csautomation.rules.diff import FIELDS, condition_text
from csautomation.rules.loader import RuleSet
from csautomation.store import ledger
from csautomation.store.engine import table
from csautomation.store.firings import rule_ids_fired
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow

# the fields shown under the conditions, in the words `csauto rules diff` uses
DETAILS = ("trigger", "scope", "cooldown", "actions", "priority", "owner")


@dataclass(frozen=True)
class RuleInfo:
    id: str
    name: str
    description: str
    enabled: bool | None  # None: not known (its definition was not kept)
    conditions: str  # in words: `usage.logins_change_30d_pct < -50 and account.tier == ...`
    details: tuple[tuple[str, str], ...]  # (field, in words)
    version: str
    in_files: bool  # False: only in the store, as at `version`

    @property
    def url(self) -> str:
        return f"/rules/{quote(self.id, safe='')}"


def describe(rule: spec.Rule, version: str, in_files: bool) -> RuleInfo:
    words = dict(FIELDS)
    return RuleInfo(
        id=rule.id,
        name=rule.name,
        description=rule.description.strip(),
        enabled=rule.enabled,
        conditions=condition_text(rule.conditions),
        details=tuple((name, words[name](rule)) for name in DETAILS),
        version=version,
        in_files=in_files,
    )


class RuleCatalog:
    """`rules` returns the rule set served now (None: the files did not load)."""

    def __init__(self, store: Store, rules: Callable[[], RuleSet | None]) -> None:
        self.store = store
        self.rules = rules

    def all(self) -> list[RuleInfo]:
        """Every rule of the files, then every rule only the store knows, by id."""
        current = self.rules()
        found = {
            r.id: describe(r.rule, r.version, True) for r in (current.rules if current else ())
        }
        for rule_id in rule_ids_fired(self.store) - found.keys():
            stored = self._stored(rule_id)
            if stored is not None:
                found[rule_id] = stored
        return sorted(found.values(), key=lambda r: r.id)

    def get(self, rule_id: str) -> RuleInfo | None:
        current = self.rules()
        compiled = current.by_id(rule_id) if current is not None else None
        if compiled is not None:
            return describe(compiled.rule, compiled.version, True)
        return self._stored(rule_id)

    def _stored(self, rule_id: str) -> RuleInfo | None:
        """The rule as at its newest firing's version, when the store kept that version."""
        t = table(RuleFiringRow)
        q = (
            select(t.c.rule_version)
            .where(t.c.rule_id == rule_id)
            .order_by(t.c.fired_at.desc(), t.c.id.desc())
            .limit(1)
        )
        with self.store.engine.connect() as conn:
            version = conn.execute(q).scalar()
        if version is None:
            return None
        source = ledger.rule_source(self.store, str(version))
        try:
            rule = spec.Rule.model_validate(source or {})
        except ValidationError:  # not kept, or in a form today's rule language does not read
            return RuleInfo(
                id=rule_id,
                name=rule_id,
                description="",
                enabled=None,
                conditions="",
                details=(),
                version=str(version),
                in_files=False,
            )
        return describe(rule, str(version), False)
