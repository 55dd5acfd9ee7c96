"""Cooldowns for the rule runtime (its `CooldownStore`): when each rule last fired for each
account, kept in the rule_firings table, which is also the dispatch outbox."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from csautomation.pipeline.dispatch import Firing
from csautomation.rules.runtime import Match
from csautomation.store.repo import Store


class SqlCooldowns:
    """The rule runtime's CooldownStore, kept in the rule_firings table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def last_fired(self, rule_id: str, account_id: str) -> datetime | None:
        return self.store.last_fired(rule_id, account_id)

    def record(self, match: Match) -> None:
        self.store.record_firing(
            match.rule_id,
            match.rule.version,
            match.account_id,
            match.window,
            match.rule.rule.priority.value,
            match.at,
            match.explanation.to_dict(),
            [a.model_dump(mode="json", by_alias=True) for a in match.rule.rule.actions],
        )


class BatchCooldowns:
    """A pass's view of cooldowns: the store's firings for the pass's accounts, read in one
    query, plus this pass's own, written at the end."""

    def __init__(self, store: Store, account_ids: Collection[str]) -> None:
        self.stored = store.last_firings(account_ids)
        self.fired: dict[tuple[str, str], Match] = {}
        # each account's health when it was evaluated, kept with its firings: the review
        # page shows it beside today's, whether or not the rule read it
        self.health: dict[str, dict[str, Any]] = {}

    def note_health(self, account_id: str, record: dict[str, Any]) -> None:
        score = record.get("health.score")
        if isinstance(score, int | float) and not isinstance(score, bool):
            self.health[account_id] = {"score": score, "band": record.get("health.band")}

    def last_fired(self, rule_id: str, account_id: str) -> datetime | None:
        mine = self.fired.get((rule_id, account_id))
        return mine.at if mine is not None else self.stored.get((rule_id, account_id))

    def record(self, match: Match) -> None:
        self.fired[(match.rule_id, match.account_id)] = match

    def forget(self, account_id: str) -> None:
        """Drop what this pass fired for the account (its evaluation failed midway)."""
        for key in [k for k in self.fired if k[1] == account_id]:
            del self.fired[key]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "rule_id": f.rule_id,
                "rule_version": f.rule_version,
                "account_id": f.account_id,
                "window": f.window,
                "priority": f.priority,
                "fired_at": f.at,
                "explain": self._with_health(f),
                "actions": list(f.actions),
            }
            for f in map(Firing.from_match, self.fired.values())
        ]

    def _with_health(self, f: Firing) -> dict[str, Any]:
        health = self.health.get(f.account_id)
        return f.explain if health is None else {**f.explain, "health": health}

    def rules(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The rules that fired, as they are at their versions (for the decision ledger)."""
        return {
            m.rule.version: (m.rule_id, m.rule.rule.model_dump(mode="json", by_alias=True))
            for m in self.fired.values()
        }
