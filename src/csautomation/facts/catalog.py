"""Every fact a rule can read, by dotted path, with its type and meaning.

Rules are checked against this catalogue when they load: an unknown path or a comparison
that does not fit the fact's type is a validation error, not a silent non-match.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FactType(StrEnum):
    number = "number"
    boolean = "boolean"
    string = "string"
    list = "list"


@dataclass(frozen=True)
class FactDef:
    """A fact and its domain: the values it can take, so that `rules validate` can refuse
    a comparison that can never hold (`engagement.nps < 0`) or always holds."""

    path: str
    type: FactType
    description: str
    series: bool = True  # has a daily history, so window conditions may use it
    low: float | None = None  # the least value the fact can take, where there is one
    high: float | None = None  # the greatest
    values: tuple[str, ...] = ()  # a text fact's only values, where they are fixed
    unit: str = ""  # "%" (already in percent), "probability" (0 to 1), "days", ...

    @property
    def domain(self) -> str:
        """In words: 'from 0 to 10', 'at least 0', 'green, yellow or red'."""
        if self.values:
            return _one_of(self.values)
        if self.type != FactType.number:
            return {"boolean": "true or false", "string": "any text"}.get(self.type, "a list")
        if self.low is not None and self.high is not None:
            return f"from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"at least {self.low:g}"
        if self.high is not None:
            return f"at most {self.high:g}"
        return "any number"


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]


N, B, S, L = FactType.number, FactType.boolean, FactType.string, FactType.list
# domains, by kind of number
SCORE: dict[str, Any] = {"low": 0.0, "high": 100.0}  # a 0 to 100 score
DELTA: dict[str, Any] = {"low": -100.0, "high": 100.0}  # a score now minus a score before
COUNT: dict[str, Any] = {"low": 0.0}  # a count, an amount, a number of days
DROP: dict[str, Any] = {"low": -100.0, "unit": "%"}  # a change in %: nothing falls by more than all
PCT: dict[str, Any] = {"low": 0.0, "high": 100.0, "unit": "%"}
PROB: dict[str, Any] = {"low": 0.0, "high": 1.0, "unit": "probability"}
DAYS: dict[str, Any] = {"low": 0.0, "unit": "days"}

_DEFS = [
    FactDef("account.id", S, "account id", series=False),
    FactDef("account.name", S, "account name", series=False),
    FactDef(
        "account.tier",
        S,
        "enterprise, mid_market or smb",
        series=False,
        values=("enterprise", "mid_market", "smb"),
    ),
    FactDef("account.segment", S, "segment from the CRM", series=False),
    FactDef("account.region", S, "sales region", series=False),
    FactDef("account.tenant", S, "tenant the account belongs to", series=False),
    FactDef("account.owner", S, "owning CSM's user id", series=False),
    FactDef("account.arr", N, "annual recurring revenue", **COUNT),
    FactDef("account.seats", N, "licensed seats", low=1.0),
    FactDef("account.tenure_days", N, "days since the account became a customer"),
    FactDef("account.tags", L, "tags from the CRM", series=False),
    FactDef("health.score", N, "composite health score, 0 to 100", **SCORE),
    FactDef("health.band", S, "green, yellow or red", values=("green", "yellow", "red")),
    FactDef("health.trend_7d", N, "health score now minus 7 days ago", **DELTA),
    FactDef("health.trend_30d", N, "health score now minus 30 days ago", **DELTA),
    FactDef("health.trend_90d", N, "health score now minus 90 days ago", **DELTA),
    FactDef("health.product_usage", N, "product usage component, 0 to 100", **SCORE),
    FactDef("health.engagement", N, "engagement component, 0 to 100", **SCORE),
    FactDef("health.business_outcomes", N, "business outcomes component, 0 to 100", **SCORE),
    FactDef(
        "health.account_characteristics", N, "account characteristics component, 0 to 100", **SCORE
    ),
    FactDef("health.support", N, "support component, 0 to 100", **SCORE),
    FactDef("health.anomaly", B, "7-day health anomalously and materially low for the account"),
    FactDef("health.anomaly_score", N, "robust z-score of the 7-day health against 8 weeks"),
    FactDef("health.score_7d_avg", N, "health score, mean of the last 7 days", **SCORE),
    FactDef(
        "health.score_7d_baseline", N, "usual 7-day health: median over the 8 weeks before", **SCORE
    ),
    FactDef("usage.logins_7d", N, "logins in the last 7 days", **COUNT),
    FactDef("usage.logins_30d", N, "logins in the last 30 days", **COUNT),
    FactDef(
        "usage.logins_change_30d_pct", N, "logins, last 30 days against the 30 before, in %", **DROP
    ),
    FactDef("usage.active_users", N, "active users, 7-day average", **COUNT),
    FactDef(
        "usage.active_users_change_30d_pct", N, "active users against 30 days ago, in %", **DROP
    ),
    FactDef(
        "usage.seat_utilization_pct", N, "active users over licensed seats, in %", low=0.0, unit="%"
    ),
    FactDef("usage.feature_events_30d", N, "feature events in the last 30 days", **COUNT),
    FactDef("usage.days_since_last_login", N, "days since any login was seen", **DAYS),
    FactDef("usage.anomaly", B, "7-day logins anomalously and materially low for the account"),
    FactDef("usage.anomaly_score", N, "robust z-score of 7-day logins against 8 weeks"),
    FactDef(
        "usage.logins_7d_baseline", N, "usual 7-day logins: median over the 8 weeks before", **COUNT
    ),
    FactDef("engagement.meetings_attended_90d", N, "meetings attended in 90 days", **COUNT),
    FactDef(
        "engagement.meetings_missed_90d", N, "meetings missed or cancelled in 90 days", **COUNT
    ),
    FactDef("engagement.nps", N, "latest NPS answer, 0 to 10", low=0.0, high=10.0),
    FactDef(
        "engagement.days_since_last_meeting", N, "days since the last attended meeting", **DAYS
    ),
    FactDef("engagement.change_30d", N, "engagement component now minus 30 days ago", **DELTA),
    FactDef("support.tickets_30d", N, "support tickets opened in 30 days", **COUNT),
    FactDef("support.urgent_tickets_30d", N, "urgent or high tickets in 30 days", **COUNT),
    FactDef("support.escalations_30d", N, "support escalations in 30 days", **COUNT),
    FactDef("support.escalations_90d", N, "support escalations in 90 days", **COUNT),
    FactDef(
        "outcomes.goals_met_pct", N, "share of agreed goals met at the last review, in %", **PCT
    ),
    FactDef("contract.days_to_renewal", N, "days until the renewal date", unit="days"),
    FactDef("contract.arr", N, "contracted ARR", **COUNT),
    FactDef("stakeholders.champion_changed", B, "the champion left 0 to 89 days ago"),
    FactDef(
        "stakeholders.champion_changed_days_ago",
        N,
        "days since the champion left (0: today)",
        **DAYS,
    ),
    FactDef("stakeholders.exec_sponsor_changed", B, "the executive sponsor left 0 to 89 days ago"),
    FactDef("churn.probability", N, "latest predicted churn probability, 0 to 1", **PROB),
    FactDef(
        "churn.probability_change_30d",
        N,
        "churn probability now minus 30 days ago",
        low=-1.0,
        high=1.0,
        unit="probability",
    ),
    FactDef("expansion.signal", B, "any expansion indicator holds"),
    FactDef("expansion.interest_90d", N, "expansion-interest signals in 90 days", **COUNT),
    FactDef("expansion.usage_growth_pct", N, "active users against 90 days ago, in %", **DROP),
]

FACTS: dict[str, FactDef] = {d.path: d for d in _DEFS}


def suggest(path: str) -> str | None:
    match = difflib.get_close_matches(path, FACTS, n=1, cutoff=0.6)
    if match:
        return match[0]
    # A right leaf in the wrong namespace ("usage.escalations_30d") is a common slip.
    leaf = path.rsplit(".", 1)[-1]
    leaves = {p.rsplit(".", 1)[-1]: p for p in FACTS}
    near = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.75)
    return leaves[near[0]] if near else None


def unknown_fact_message(path: str) -> str:
    hint = suggest(path)
    return f"unknown fact '{path}'" + (f"; did you mean '{hint}'?" if hint else "")
