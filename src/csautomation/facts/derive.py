"""Derive every fact of the catalogue, day by day, from an account's signal history.

One pass builds daily arrays (logins, tickets, meetings, ...) over the account's history,
then rolling windows are differences of cumulative sums. The same code gives the streaming
path its one record (the last day) and the backtest every day of history, so both paths read
identical facts. Too little history for a window gives a missing fact, never a made-up one.
The anomaly facts compare 7-day aggregates of logins and of the health score with the
account's own previous eight weeks (the method, and why, in facts/anomaly.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from csautomation.facts import anomaly
from csautomation.facts.catalog import FACTS, FactType
from csautomation.facts.days import AsOf, evaluation_day, instant, start_of_day
from csautomation.facts.derived import DerivedFact, SignalsFact, WindowFact, norm
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.facts.numeric import NAN, F, days_between, health_scores, pct_change, quiet

MAX_LOOKBACK = 400  # days of history kept per account: 90-day trends of 90-day windows, + slack
USAGE_MATERIAL_DROP = 0.5  # a usage anomaly also loses half the usual week's logins
HEALTH_MATERIAL_DROP = 10.0  # a health anomaly is also 10+ points below the usual score
HEALTH_SETTLE_DAYS = 90  # the longest window among the health score's inputs
CHANGED_DAYS = 90  # a stakeholder "changed" when they left 0 to 89 days ago


def _roll(x: F, w: int) -> F:
    """Sum over the last `w` days including today; NaN until `w` days of history exist."""
    cs = np.concatenate(([0.0], np.cumsum(x)))
    out = np.full(len(x), NAN)
    if len(x) >= w:
        out[w - 1 :] = cs[w:] - cs[: len(x) - w + 1]
    return out


def _lag(x: F, w: int) -> F:
    out = np.full(len(x), NAN)
    if len(x) > w:
        out[w:] = x[:-w]
    return out


def _ffill(values: F) -> F:
    """Carry the last observed value forward (NaN before the first one)."""
    idx = np.where(np.isnan(values), 0, np.arange(len(values)))
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    return out


def _days_since(mask: npt.NDArray[np.bool_]) -> F:
    n = len(mask)
    idx = np.where(mask, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, np.arange(n) - idx, NAN).astype(np.float64)


def _window_extreme(x: F, days: int, fn: Any) -> F:
    """fn (max or min) over the window of `days` days (today and the days-1 before), ignoring
    missing values."""
    out = np.full(len(x), NAN)
    if len(x) == 0:
        return out
    padded = np.concatenate((np.full(days - 1, NAN), x))
    view = np.lib.stride_tricks.sliding_window_view(padded, days)
    with np.errstate(all="ignore"), quiet():
        out = fn(view, axis=1)
    return np.asarray(out, dtype=np.float64)


@dataclass
class FactFrame:
    """Every fact of one account for each day in `days` (numbers as float arrays)."""

    account: Account
    days: list[date]
    numbers: dict[str, F] = field(default_factory=dict)
    band: list[str | None] = field(default_factory=list)
    today_counts: dict[str, F] = field(default_factory=dict)  # signals per type on each day

    def record(self, i: int = -1) -> dict[str, Any]:
        """The flat fact record of day `i` (default: the last), normalised; missing omitted."""
        rec = account_facts(self.account)
        if self.band and self.band[i] is not None:
            rec["health.band"] = self.band[i]
        for key, arr in self.numbers.items():
            v = arr[i]
            if v == v:  # not NaN
                if key in FACTS and FACTS[key].type == FactType.boolean:
                    rec[key] = bool(v)
                else:
                    rec[key] = norm(float(v))
        return rec

    def slice(self, start: int) -> FactFrame:
        return FactFrame(
            self.account,
            self.days[start:],
            {k: v[start:] for k, v in self.numbers.items()},
            self.band[start:],
            {k: v[start:] for k, v in self.today_counts.items()},
        )


def derive(
    account: Account,
    signals: Iterable[Signal],
    as_of: AsOf,
    model: HealthModel,
    extra: Sequence[DerivedFact] = (),
    start: date | None = None,
) -> FactFrame:
    """Facts for every day from `start` (default: the day of `as_of`) to that day, from the
    signals that count at `as_of` (an instant, or a day read at its end: facts/days.py).
    Each earlier day of the frame is read at its end."""
    at, as_of = instant(as_of), evaluation_day(as_of)
    first = as_of - timedelta(days=MAX_LOOKBACK - 1)
    since = start_of_day(first)
    sigs = [s for s in signals if since <= s.occurred_at <= at]
    if sigs:
        first = max(first, min(s.day for s in sigs))
    first = min(first, start or as_of)
    n = (as_of - first).days + 1
    offset = ((start or as_of) - first).days
    # Day-by-day facts (the anomaly scores) are computed only where they can be read: the
    # returned days and the look-back of any window condition over them.
    look_back = max((f.days for f in extra if isinstance(f, WindowFact)), default=0)
    frame = _derive(account, sigs, first, n, model, extra, max(0, offset - look_back))
    return frame.slice(offset)


def _derive(
    account: Account,
    sigs: list[Signal],
    first: date,
    n: int,
    model: HealthModel,
    extra: Sequence[DerivedFact],
    from_index: int = 0,
) -> FactFrame:
    d = _daily(sigs, first, n)
    out: dict[str, F] = {}
    seats_f = _contract_facts(out, account, d, first, n)
    has_usage = bool(d.seen_usage.any())
    if has_usage:
        _usage_facts(out, d, seats_f, from_index)
    _engagement_facts(out, d)
    score = _health_facts(out, model, n, from_index)
    exp = model.expansion
    with np.errstate(invalid="ignore"):
        signal = out["expansion.interest_90d"] > 0
        if has_usage:
            signal |= out["usage.seat_utilization_pct"] >= exp.seat_utilization_pct_at_least
            signal |= out["expansion.usage_growth_pct"] >= exp.usage_growth_pct_at_least
    out["expansion.signal"] = signal.astype(np.float64)

    for fact in extra:
        out[fact.key] = _extra(fact, out, d.counts, n)
    bands = [None if s != s else model.band(float(s)) for s in score]
    days = [first + timedelta(days=i) for i in range(n)]
    return FactFrame(account, days, out, bands, dict(d.counts))


@dataclass
class _Daily:
    """The account's signals as daily arrays, day 0 being `first`."""

    logins: F
    users: F
    features: F
    seen_usage: npt.NDArray[np.bool_]
    attended: F
    missed: F
    tickets: F
    urgent: F
    escalations: F
    interest: F
    nps: F
    goals: F
    churn: F
    renewal: F  # days from `first` to the renewal date
    arr: F
    seats: F
    champion_left: npt.NDArray[np.bool_]
    sponsor_left: npt.NDArray[np.bool_]
    counts: dict[str, F]  # signals per type on each day


def _daily(sigs: list[Signal], first: date, n: int) -> _Daily:
    def zeros() -> F:
        return np.zeros(n)

    def nan() -> F:
        return np.full(n, NAN)

    logins, users, features, seen_usage = zeros(), nan(), zeros(), np.zeros(n, dtype=bool)
    attended, missed, tickets, urgent, escalations, interest = (zeros() for _ in range(6))
    nps, goals, churn, renewal, arr, seats = (nan() for _ in range(6))
    champion_left, sponsor_left = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    counts: dict[str, F] = defaultdict(zeros)

    for s in sigs:
        d = (s.day - first).days
        p = s.payload
        counts[s.type.value][d] += 1
        t = s.type
        if t is SignalType.usage_daily:
            logins[d] += p["logins"]
            users[d] = p["active_users"]
            features[d] += p.get("feature_events", 0)
            seen_usage[d] = True
        elif t is SignalType.meeting:
            (attended if p["status"] == "attended" else missed)[d] += 1
        elif t is SignalType.nps_response:
            nps[d] = p["score"]
        elif t is SignalType.support_ticket:
            tickets[d] += 1
            urgent[d] += p["priority"] in ("urgent", "high")
        elif t is SignalType.support_escalation:
            escalations[d] += 1
        elif t is SignalType.outcome_review:
            goals[d] = p["goals_met_pct"]
        elif t is SignalType.stakeholder_change and p["change"] == "left":
            if p["role"] == "champion":
                champion_left[d] = True
            elif p["role"] == "exec_sponsor":
                sponsor_left[d] = True
        elif t is SignalType.churn_prediction:
            churn[d] = p["probability"]
        elif t is SignalType.contract_update:
            if p.get("renewal_date"):
                renewal[d] = (date.fromisoformat(str(p["renewal_date"])) - first).days
            if p.get("arr") is not None:
                arr[d] = p["arr"]
            if p.get("seats") is not None:
                seats[d] = p["seats"]
        elif t is SignalType.expansion_interest:
            interest[d] += 1
    return _Daily(
        logins,
        users,
        features,
        seen_usage,
        attended,
        missed,
        tickets,
        urgent,
        escalations,
        interest,
        nps,
        goals,
        churn,
        renewal,
        arr,
        seats,
        champion_left,
        sponsor_left,
        counts,
    )


def _contract_facts(out: dict[str, F], account: Account, d: _Daily, first: date, n: int) -> F:
    """The account and contract facts into `out`; returns the seats, day by day."""
    day_index = np.arange(n, dtype=np.float64)
    renewal_f = _ffill(d.renewal)
    renewal_f = np.where(np.isnan(renewal_f), days_between(first, account.renewal_date), renewal_f)
    seats_f = _ffill(d.seats)
    seats_f = np.where(np.isnan(seats_f), account.seats, seats_f)
    arr_f = _ffill(d.arr)
    arr_f = np.where(np.isnan(arr_f), NAN if account.arr is None else account.arr, arr_f)
    out["account.arr"] = arr_f
    out["account.seats"] = seats_f
    out["account.tenure_days"] = day_index - days_between(first, account.customer_since)
    out["contract.arr"] = arr_f
    out["contract.days_to_renewal"] = renewal_f - day_index
    return seats_f


def _usage_facts(out: dict[str, F], d: _Daily, seats_f: F, from_index: int) -> None:
    logins, users = d.logins, d.users
    l30 = _roll(logins, 30)
    out["usage.logins_7d"] = _roll(logins, 7)
    out["usage.logins_30d"] = l30
    out["usage.logins_change_30d_pct"] = pct_change(l30, _lag(l30, 30))
    users_f = _ffill(users)
    with quiet():
        au = np.nanmean(
            np.lib.stride_tricks.sliding_window_view(np.concatenate((np.full(6, NAN), users)), 7),
            axis=1,
        )
    au = np.where(np.isnan(au), users_f, au)
    out["usage.active_users"] = au
    out["usage.active_users_change_30d_pct"] = pct_change(au, _lag(au, 30))
    out["usage.seat_utilization_pct"] = au / seats_f * 100.0
    out["usage.feature_events_30d"] = _roll(d.features, 30)
    out["usage.days_since_last_login"] = _days_since(logins > 0)
    out["expansion.usage_growth_pct"] = pct_change(au, _lag(au, 90))
    out.update(_usage_anomaly(logins, int(np.argmax(d.seen_usage)), from_index))


def _engagement_facts(out: dict[str, F], d: _Daily) -> None:
    """Meetings, support, outcomes, stakeholders, churn and expansion interest into `out`."""
    out["engagement.meetings_attended_90d"] = _roll(d.attended, 90)
    out["engagement.meetings_missed_90d"] = _roll(d.missed, 90)
    out["engagement.nps"] = _ffill(d.nps)
    out["engagement.days_since_last_meeting"] = _days_since(d.attended > 0)
    out["support.tickets_30d"] = _roll(d.tickets, 30)
    out["support.urgent_tickets_30d"] = _roll(d.urgent, 30)
    out["support.escalations_30d"] = _roll(d.escalations, 30)
    out["support.escalations_90d"] = _roll(d.escalations, 90)
    out["outcomes.goals_met_pct"] = _ffill(d.goals)
    champ_days = _days_since(d.champion_left)
    out["stakeholders.champion_changed_days_ago"] = champ_days
    out["stakeholders.champion_changed"] = np.where(champ_days < CHANGED_DAYS, 1.0, 0.0)
    sponsor_days = _days_since(d.sponsor_left)
    out["stakeholders.exec_sponsor_changed"] = np.where(sponsor_days < CHANGED_DAYS, 1.0, 0.0)
    churn_f = _ffill(d.churn)
    out["churn.probability"] = churn_f
    out["churn.probability_change_30d"] = churn_f - _lag(churn_f, 30)
    out["expansion.interest_90d"] = _roll(d.interest, 90)


def _health_facts(out: dict[str, F], model: HealthModel, n: int, from_index: int) -> F:
    """The health score, its parts, trends and anomaly into `out`; returns the score."""
    score, parts = health_scores(out, model, n)
    out.update(parts)
    out["health.score"] = score
    for w in (7, 30, 90):
        out[f"health.trend_{w}d"] = score - _lag(score, w)
    out.update(_health_anomaly(score, from_index))
    out["engagement.change_30d"] = parts["health.engagement"] - _lag(parts["health.engagement"], 30)
    return score


def _usage_anomaly(logins: F, first_usage: int, from_index: int) -> dict[str, F]:
    """Logins over the last 7 days against the account's own previous eight weeks.

    Days before the first usage signal are no history (not zero logins), so an account
    whose feed started recently has a missing score rather than a made-up spike.
    """
    weekly = anomaly.trailing_sum(logins, first_usage)
    z, median = anomaly.robust_z(weekly, from_index)
    z = np.round(z, 2)  # the flag reads the score the facts show
    material = USAGE_MATERIAL_DROP * median
    return {
        "usage.anomaly_score": z,
        "usage.logins_7d_baseline": median,
        "usage.anomaly": anomaly.drop_flags(weekly, z, median, material),
    }


def _health_anomaly(score: F, from_index: int) -> dict[str, F]:
    """The 7-day mean health score against the account's own previous eight weeks.

    The score's inputs include 90-day windows that are left out (and the weights
    renormalised) until 90 days of history exist; a score that changes make-up is not
    comparable with itself, so the series starts on day 90.
    """
    weekly = np.round(anomaly.trailing_mean(score, HEALTH_SETTLE_DAYS - 1), 2)
    z, median = anomaly.robust_z(weekly, from_index)
    z, median = np.round(z, 2), np.round(median, 2)  # the flag reads what the facts show
    material = np.full(len(score), HEALTH_MATERIAL_DROP)
    return {
        "health.anomaly_score": z,
        "health.score_7d_avg": weekly,
        "health.score_7d_baseline": median,
        "health.anomaly": anomaly.drop_flags(weekly, z, median, material),
    }


def _extra(fact: DerivedFact, out: dict[str, F], counts: dict[str, F], n: int) -> F:
    if isinstance(fact, WindowFact):
        series = out.get(fact.fact, np.full(n, NAN))
        if fact.direction == "fell":
            diff = _window_extreme(series, fact.days, np.nanmax) - series
        else:
            diff = series - _window_extreme(series, fact.days, np.nanmin)
        return np.asarray(diff, dtype=np.float64)
    assert isinstance(fact, SignalsFact)
    sums = [_roll_partial(counts.get(t, np.zeros(n)), fact.days) for t in fact.types]
    stacked = np.array([s > 0 for s in sums] if fact.counting == "types" else sums)
    return np.asarray(stacked.sum(axis=0), dtype=np.float64)


def _roll_partial(x: F, w: int) -> F:
    """Like _roll, but counts what history there is: a signal seen is seen."""
    cs = np.concatenate(([0.0], np.cumsum(x)))
    lo = np.maximum(np.arange(len(x)) + 1 - w, 0)
    return np.asarray(cs[np.arange(len(x)) + 1] - cs[lo], dtype=np.float64)


def group_by_account(signals: Iterable[Signal]) -> dict[str, list[Signal]]:
    out: dict[str, list[Signal]] = defaultdict(list)
    for s in signals:
        out[s.account_id].append(s)
    return out


def account_facts(a: Account) -> dict[str, Any]:
    """The account's own attributes as facts, the start of every record."""
    rec: dict[str, Any] = {
        "account.id": a.id,
        "account.name": a.name,
        "account.tier": a.tier.value,
        "account.segment": a.segment,
        "account.region": a.region,
        "account.tenant": a.tenant,
        "account.owner": a.owner,
    }
    if a.tags:
        rec["account.tags"] = list(a.tags)
    return rec
