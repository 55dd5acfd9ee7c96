"""The last day's fact record of many accounts at once: the streaming pipeline's batch path.

`derive(...).record()` costs about 1.7 ms an account, nearly all of it numpy's overhead per
call on short 1-D arrays. Here the accounts of a batch share one 2-D grid (days x accounts),
so the few hundred numpy calls are paid once per batch instead of once per account.

Each column holds one account's history: its last row is `as_of`, its first day (where
`derive` starts that account's arrays) is row `start[column]`. Above that, sums hold 0 and
observations NaN, so running sums and forward fills give the very numbers they give on the
account's own array, and every "missing until w days of history exist" and every lag is
masked against the column's own start. Days run down the rows so that running sums and
fills go across all accounts at once. The floating-point operations are derive's, in
derive's order (numeric.health_scores runs on the flattened grid), so the records are equal, not
merely close; the one change of order is in the 7-day mean of active users, whose sums are
of whole numbers and so exact in any order.

derive.py stays the reference (and the backtest's path); tests/facts/test_derive_many.py
holds the two equal on random histories and on the sample data set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date
from itertools import compress
from typing import Any

import numpy as np
import numpy.typing as npt

from csautomation.facts import anomaly
from csautomation.facts.anomaly import BASELINE, GAP, MIN_BASELINE, WEEK
from csautomation.facts.catalog import FACTS, FactType
from csautomation.facts.derive import (
    HEALTH_MATERIAL_DROP,
    HEALTH_SETTLE_DAYS,
    MAX_LOOKBACK,
    USAGE_MATERIAL_DROP,
    account_facts,
)
from csautomation.facts.derived import DECIMALS, DerivedFact, SignalsFact, WindowFact
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.facts.numeric import NAN, F, health_scores, pct_change, quiet

I = npt.NDArray[np.intp]  # noqa: E741
B = npt.NDArray[np.bool_]
Item = tuple[Account, Sequence[Signal], date]


def derive_records(
    items: Sequence[Item],
    model: HealthModel,
    extra: Sequence[DerivedFact] = (),
) -> list[dict[str, Any]]:
    """For each (account, signals, as_of): exactly
    derive(account, signals, as_of, model, extra).record()."""
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, (_, _, as_of) in enumerate(items):
        by_day[as_of].append(i)
    count_types = {t for f in extra if isinstance(f, SignalsFact) for t in f.types}
    records: list[dict[str, Any]] = [{} for _ in items]
    for as_of, idx in by_day.items():
        updates = _gather([items[i][1] for i in idx], as_of, count_types)
        # Histories of very different lengths get separate grids, so that a few long ones
        # do not pad a batch of short ones with hundreds of empty days.
        buckets: dict[int, list[int]] = defaultdict(list)
        for j, n in enumerate(updates.days):
            buckets[max(6, (n - 1).bit_length())].append(j)
        for bucket in buckets.values():
            step = max(1, _MAX_CELLS // max(updates.days[j] for j in bucket))
            for k in range(0, len(bucket), step):
                members = bucket[k : k + step]
                accounts = [items[idx[j]][0] for j in members]
                daily, start = updates.grid(members)
                got = _records(accounts, as_of, daily, start, model, extra)
                for j, rec in zip(members, got, strict=True):
                    records[idx[j]] = rec
    return records


# Grids and anomaly baselines are cut to about this many cells (a few MB an array): the
# per-call overhead is long paid off by then, and memory stays bounded for any batch.
_MAX_CELLS = 2**18


@dataclass
class _Daily:
    """derive's daily arrays, one column per account, the last row being as_of."""

    logins: F
    users: F
    features: F
    seen_usage: B
    attended: F
    missed: F
    tickets: F
    urgent: F
    escalations: F
    interest: F
    nps: F
    goals: F
    churn: F
    renewal: F  # days from as_of to the renewal date
    arr: F
    seats: F
    champion_left: B
    sponsor_left: B
    counts: dict[str, F]  # signals per type, for the types that signal-count facts read


@dataclass
class _Updates:
    """derive's loop over signals as data: for each daily array (a _Daily field), where
    (account * MAX_LOOKBACK + day, day MAX_LOOKBACK - 1 being as_of) and by how much."""

    days: list[int]  # the length of derive's arrays, per account
    added: dict[str, tuple[I, F | None]]  # derive's `+=`, in signal order (None: += 1)
    assigned: dict[str, tuple[I, F]]  # derive's `=` (the last signal of a day's value)
    flagged: dict[str, I]  # derive's `= True`

    def grid(self, members: list[int]) -> tuple[_Daily, I]:
        """The daily arrays of these accounts, as long as the longest history among them,
        and the row each account's history starts on."""
        n, m = max(self.days[j] for j in members), len(members)
        column = np.full(len(self.days), -1, dtype=np.intp)
        column[members] = np.arange(m)

        def place(at: I) -> tuple[I, B | None]:
            account, day = np.divmod(at, MAX_LOOKBACK)
            flat = (day - (MAX_LOOKBACK - n)) * m + column[account]
            if m == len(self.days):
                return flat, None
            keep = column[account] >= 0
            return flat[keep], keep

        def add(at: I, weights: F | None) -> F:
            flat, keep = place(at)
            if weights is not None and keep is not None:
                weights = weights[keep]
            out = np.bincount(flat, weights, minlength=n * m)
            return out.astype(np.float64, copy=False).reshape(n, m)

        def assign(at: I, values: F) -> F:
            flat, keep = place(at)
            out = np.full(n * m, NAN)
            out[flat] = values if keep is None else values[keep]
            return out.reshape(n, m)

        def flag(at: I) -> B:
            out = np.zeros(n * m, dtype=bool)
            out[place(at)[0]] = True
            return out.reshape(n, m)

        arrays: dict[str, npt.NDArray[Any]] = {k: add(*v) for k, v in self.added.items()}
        arrays |= {k: assign(*v) for k, v in self.assigned.items()}
        arrays |= {k: flag(v) for k, v in self.flagged.items()}
        counts = {k.removeprefix("count:"): v for k, v in arrays.items() if k.startswith("count:")}
        named = {f.name: arrays[f.name] for f in fields(_Daily) if f.name != "counts"}
        start = np.array([n - self.days[j] for j in members], dtype=np.intp)
        return _Daily(**named, counts=counts), start


def _gather(histories: list[Sequence[Signal]], as_of: date, count_types: set[str]) -> _Updates:
    """derive's loop over signals, for all accounts in one pass (so each signal is read once)."""
    last = as_of.toordinal()
    first = last - MAX_LOOKBACK + 1
    usage_at: list[int] = []
    logins: list[Any] = []
    features: list[Any] = []
    users: dict[int, Any] = {}
    attended: list[int] = []
    missed: list[int] = []
    tickets: list[int] = []
    urgent: list[int] = []
    escalations: list[int] = []
    interest: list[int] = []
    champion: list[int] = []
    sponsor: list[int] = []
    nps: dict[int, Any] = {}
    goals: dict[int, Any] = {}
    churn: dict[int, Any] = {}
    renewal: dict[int, Any] = {}
    arr: dict[int, Any] = {}
    seats: dict[int, Any] = {}
    counts: dict[str, list[int]] = {t: [] for t in count_types}
    days: list[int] = []
    usage, meeting = SignalType.usage_daily, SignalType.meeting
    for account, signals in enumerate(histories):
        shift = account * MAX_LOOKBACK - first
        earliest = last + 1
        for s in signals:
            o = s.occurred_at.toordinal()  # Signal.day's ordinal, without building the date
            if o < first or o > last:
                continue
            if o < earliest:
                earliest = o
            k = shift + o
            t, p = s.type, s.payload
            if counts and t in counts:
                counts[t].append(k)
            if t is usage:
                usage_at.append(k)
                logins.append(p["logins"])
                users[k] = p["active_users"]
                features.append(p.get("feature_events", 0))
            elif t is meeting:
                (attended if p["status"] == "attended" else missed).append(k)
            elif t is SignalType.nps_response:
                nps[k] = p["score"]
            elif t is SignalType.support_ticket:
                tickets.append(k)
                if p["priority"] in ("urgent", "high"):
                    urgent.append(k)
            elif t is SignalType.support_escalation:
                escalations.append(k)
            elif t is SignalType.outcome_review:
                goals[k] = p["goals_met_pct"]
            elif t is SignalType.stakeholder_change and p["change"] == "left":
                if p["role"] == "champion":
                    champion.append(k)
                elif p["role"] == "exec_sponsor":
                    sponsor.append(k)
            elif t is SignalType.churn_prediction:
                churn[k] = p["probability"]
            elif t is SignalType.contract_update:
                if p.get("renewal_date"):
                    renewal[k] = date.fromisoformat(str(p["renewal_date"])).toordinal() - last
                if p.get("arr") is not None:
                    arr[k] = p["arr"]
                if p.get("seats") is not None:
                    seats[k] = p["seats"]
            elif t is SignalType.expansion_interest:
                interest.append(k)
        # No signal: derive still makes MAX_LOOKBACK days (all of them missing or zero).
        days.append(last - earliest + 1 if earliest <= last else MAX_LOOKBACK)

    def at(indices: Iterable[int]) -> I:
        return np.fromiter(indices, dtype=np.intp)

    def values(v: Iterable[Any]) -> F:
        return np.asarray(list(v), dtype=np.float64)

    usage_idx = at(usage_at)
    added: dict[str, tuple[I, F | None]] = {
        "logins": (usage_idx, values(logins)),
        "features": (usage_idx, values(features)),
    }
    for name, ks in (
        ("attended", attended),
        ("missed", missed),
        ("tickets", tickets),
        ("urgent", urgent),
        ("escalations", escalations),
        ("interest", interest),
    ):
        added[name] = (at(ks), None)
    for kind, ks in counts.items():
        added[f"count:{kind}"] = (at(ks), None)
    assigned = {
        name: (at(d), values(d.values()))
        for name, d in (
            ("users", users),
            ("nps", nps),
            ("goals", goals),
            ("churn", churn),
            ("renewal", renewal),
            ("arr", arr),
            ("seats", seats),
        )
    }
    flagged = {"seen_usage": usage_idx, "champion_left": at(champion), "sponsor_left": at(sponsor)}
    return _Updates(days, added, assigned, flagged)


# derive's helpers, down each column (account); `start` is each account's first row.


def _before(start: I, n: int, days: int = 0) -> B:
    """True where an account has fewer than `days` days of its own history behind the row."""
    return np.asarray(np.arange(n)[:, None] < start + days)


def _running(x: F) -> F:
    """Running sums down the columns, after a row of zeros."""
    cs = np.zeros((x.shape[0] + 1, x.shape[1]))
    np.cumsum(x, axis=0, out=cs[1:])
    return cs


def _roll(cs: F, w: int, start: I) -> F:
    """derive._roll, from the running sums `cs`: NaN until `w` days of history exist."""
    n = cs.shape[0] - 1
    out = np.full((n, cs.shape[1]), NAN)
    if n >= w:
        out[w - 1 :] = cs[w:] - cs[: n - w + 1]
    out[_before(start, n, w - 1)] = NAN
    return out


def _lag(x: F, w: int, start: I) -> F:
    out = np.full(x.shape, NAN)
    if x.shape[0] > w:
        out[w:] = x[:-w]
    out[_before(start, x.shape[0], w)] = NAN
    return out


def _ffill(values: F) -> F:
    idx = np.where(np.isnan(values), 0, np.arange(values.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(values, idx, axis=0)


def _days_since(mask: B) -> F:
    day = np.arange(mask.shape[0])[:, None]
    idx = np.where(mask, day, -1)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.where(idx >= 0, day - idx, NAN).astype(np.float64)


def _window_sum(x: F, w: int) -> F:
    """Sum over the last `w` days, fewer at the top of the grid."""
    cs = _running(x)
    n = x.shape[0]
    return cs[1:] - cs[np.maximum(np.arange(n) + 1 - w, 0)]


def _trailing_sum(x: F, valid_from: I) -> F:
    """anomaly.trailing_sum per account, `valid_from` a row per account.

    The running sum starts at the account's start as anomaly's does on the account's own
    array (NaN before the start adds zeros), so the float differences are the same.
    """
    n = x.shape[0]
    out = np.full(x.shape, NAN)
    if n >= WEEK:
        gap = np.isnan(x)
        cs = _running(np.where(gap, 0.0, x))
        holes = np.zeros((n + 1, x.shape[1]), dtype=np.intp)
        np.cumsum(gap, axis=0, out=holes[1:])
        total = cs[WEEK:] - cs[: n + 1 - WEEK]
        missing = holes[WEEK:] - holes[: n + 1 - WEEK]
        out[WEEK - 1 :] = np.where(missing > 0, NAN, total)
    out[_before(valid_from, n, WEEK - 1)] = NAN
    return out


def _robust_z(x: F, lo: I, first: int) -> tuple[F, F]:
    """anomaly.robust_z per account, for the days from `first` (derive's from_index) on; an
    account's days before its own `lo` are missing too."""
    n, m = x.shape
    z, median = np.full(x.shape, NAN), np.full(x.shape, NAN)
    first = max(first, int(lo.min()))
    if n <= first:
        return z, median
    padded = np.concatenate((np.full((BASELINE - 1, m), NAN), x)).T
    days = np.arange(first, n)
    index = (days - GAP)[:, None] + np.arange(BASELINE)  # each day's baseline, in `padded`
    step = max(1, _MAX_CELLS // (len(days) * BASELINE))
    for a in range(0, m, step):
        window = padded[a : a + step, index]  # accounts x days x baseline
        today = x[first:, a : a + step].T
        count = np.count_nonzero(~np.isnan(window), axis=2)
        keep = (days >= lo[a : a + step, None]) & (count >= MIN_BASELINE) & ~np.isnan(today)
        if keep.any():
            account, day = np.nonzero(keep)
            at = (day + first, account + a)
            z[at], median[at] = _modified_z(window[keep], today[keep], count[keep])
    return z, median


def _modified_z(base: F, today: F, count: I) -> tuple[F, F]:
    """anomaly.robust_z's score and median, one baseline a row (its very lines)."""
    med = anomaly.sorted_median(np.sort(base, axis=1), count)
    dev = np.abs(base - med[:, None])
    mad = anomaly.sorted_median(np.sort(dev, axis=1), count)
    diff = today - med
    with np.errstate(divide="ignore", invalid="ignore"):
        score = anomaly.MAD_K * diff / mad
        flat = mad == 0
        if flat.any():
            mean_ad = np.nansum(dev[flat], axis=1) / count[flat]
            d = diff[flat]
            score[flat] = np.where(
                mean_ad > 0, d / (anomaly.MEAN_AD_K * mean_ad), np.where(d == 0, 0.0, NAN)
            )
    return score, med


_USAGE_ANOMALY = {"usage.anomaly_score", "usage.logins_7d_baseline", "usage.anomaly"}
_HEALTH_ANOMALY = {"health.anomaly_score", "health.score_7d_baseline", "health.anomaly"}


def _records(
    accounts: list[Account],
    as_of: date,
    d: _Daily,
    start: I,
    model: HealthModel,
    extra: Sequence[DerivedFact],
) -> list[dict[str, Any]]:
    """derive(...).record() for the accounts of one grid."""
    n = d.logins.shape[0]
    look_back = max((f.days for f in extra if isinstance(f, WindowFact)), default=0)
    # derive scores anomalies from day `from_index` on, which leaves window facts their
    # look-back; before that (and before 34 days of an account's history) they are missing.
    from_day = max(n - 1 - look_back, 0)
    lo = start + GAP + MIN_BASELINE - 1
    # A score read on the last day alone (no window fact or health metric reads earlier
    # days of it) is computed for that day alone: the same number, without the sorting.
    windowed = {f.fact for f in extra if isinstance(f, WindowFact)}
    metrics = {m.metric for ms in model.components.values() for m in ms}
    usage_from = from_day if (windowed | metrics) & _USAGE_ANOMALY else n - 1
    health_from = from_day if windowed & _HEALTH_ANOMALY else n - 1

    out = _Facts(windowed | metrics)
    _facts(out, accounts, as_of, d, start, lo, usage_from, health_from, model)
    last = {k: v[-1] for k, v in out.items()}
    for fact in extra:
        last[fact.key] = _extra(fact, out, d.counts, start, n)
    return _to_records(accounts, last, model)


class _Facts(dict[str, F]):
    """Facts by key, in derive's order: the whole series of those read again later (health
    metrics, window facts), the last day alone of the others, so that the grid's memory is
    freed, and reused, as the facts are derived."""

    def __init__(self, series: set[str]) -> None:
        super().__init__()
        self.series = series

    def __setitem__(self, key: str, value: F) -> None:
        super().__setitem__(key, value if key in self.series else value[-1:].copy())


def _facts(
    out: _Facts,
    accounts: list[Account],
    as_of: date,
    d: _Daily,
    start: I,
    lo: I,
    usage_from: int,
    health_from: int,
    model: HealthModel,
) -> None:
    """derive._derive's facts on the grid into `out`, in its order (the record's key order)."""
    n, m = d.logins.shape
    to_end = (n - 1 - np.arange(n))[:, None]  # days from each row to as_of

    def per_account(values: Iterable[float]) -> F:
        return np.fromiter(values, dtype=np.float64, count=m)

    renewal_f = _ffill(d.renewal)
    renewal = per_account((a.renewal_date - as_of).days for a in accounts)
    renewal_f = np.where(np.isnan(renewal_f), renewal, renewal_f)
    seats_f = _ffill(d.seats)
    seats_f = np.where(np.isnan(seats_f), per_account(a.seats for a in accounts), seats_f)
    arr_f = _ffill(d.arr)
    arr_f = np.where(np.isnan(arr_f), per_account(a.arr for a in accounts), arr_f)
    out["account.arr"] = arr_f
    out["account.seats"] = seats_f
    tenure = per_account((as_of - a.customer_since).days for a in accounts)
    out["account.tenure_days"] = tenure - to_end
    out["contract.arr"] = arr_f
    out["contract.days_to_renewal"] = renewal_f + to_end

    # derive leaves the usage facts out for an account without usage signals: here NaN.
    has_usage: B = np.asarray(d.seen_usage.any(axis=0))
    logins = _running(d.logins)
    l30 = np.where(has_usage, _roll(logins, 30, start), NAN)
    out["usage.logins_7d"] = np.where(has_usage, _roll(logins, 7, start), NAN)
    out["usage.logins_30d"] = l30
    out["usage.logins_change_30d_pct"] = pct_change(l30, _lag(l30, 30, start))
    # derive's nanmean over 7 days. Active users are whole numbers (the payload validates
    # them as int), so the sums are exact in whatever order they are added.
    seen = ~np.isnan(d.users)
    with np.errstate(invalid="ignore"):
        au = _window_sum(np.where(seen, d.users, 0.0), 7) / _window_sum(seen * 1.0, 7)
    au = np.where(np.isnan(au), _ffill(d.users), au)
    out["usage.active_users"] = au
    out["usage.active_users_change_30d_pct"] = pct_change(au, _lag(au, 30, start))
    utilization = au / seats_f * 100.0
    out["usage.seat_utilization_pct"] = utilization
    features = _roll(_running(d.features), 30, start)
    out["usage.feature_events_30d"] = np.where(has_usage, features, NAN)
    out["usage.days_since_last_login"] = _days_since(d.logins > 0)
    growth = pct_change(au, _lag(au, 90, start))
    out["expansion.usage_growth_pct"] = growth
    first_usage = np.where(has_usage, np.argmax(d.seen_usage, axis=0), n)
    weekly = _trailing_sum(d.logins, first_usage)
    z, median = _robust_z(weekly, lo, usage_from)
    z = np.round(z, 2)  # the flag reads the score the facts show
    out["usage.anomaly_score"] = z
    out["usage.logins_7d_baseline"] = median
    out["usage.anomaly"] = anomaly.drop_flags(weekly, z, median, USAGE_MATERIAL_DROP * median)

    escalations = _running(d.escalations)
    out["engagement.meetings_attended_90d"] = _roll(_running(d.attended), 90, start)
    out["engagement.meetings_missed_90d"] = _roll(_running(d.missed), 90, start)
    out["engagement.nps"] = _ffill(d.nps)
    out["engagement.days_since_last_meeting"] = _days_since(d.attended > 0)
    out["support.tickets_30d"] = _roll(_running(d.tickets), 30, start)
    out["support.urgent_tickets_30d"] = _roll(_running(d.urgent), 30, start)
    out["support.escalations_30d"] = _roll(escalations, 30, start)
    out["support.escalations_90d"] = _roll(escalations, 90, start)
    out["outcomes.goals_met_pct"] = _ffill(d.goals)
    champ_days = _days_since(d.champion_left)
    out["stakeholders.champion_changed_days_ago"] = champ_days
    out["stakeholders.champion_changed"] = np.where(champ_days <= 90, 1.0, 0.0)
    sponsor_days = _days_since(d.sponsor_left)
    out["stakeholders.exec_sponsor_changed"] = np.where(sponsor_days <= 90, 1.0, 0.0)
    churn_f = _ffill(d.churn)
    out["churn.probability"] = churn_f
    out["churn.probability_change_30d"] = churn_f - _lag(churn_f, 30, start)
    interest = _roll(_running(d.interest), 90, start)
    out["expansion.interest_90d"] = interest

    # derive's own health_scores, on the grid flattened: it is elementwise, so the same numbers.
    metrics = {k: v.reshape(-1) for k, v in out.items() if k in out.series}
    flat_score, flat_parts = health_scores(metrics, model, n * m)
    score = flat_score.reshape(n, m)
    parts = {k: v.reshape(n, m) for k, v in flat_parts.items()}
    for k, v in parts.items():
        out[k] = v
    out["health.score"] = score
    for w in (7, 30, 90):
        out[f"health.trend_{w}d"] = score - _lag(score, w, start)
    own = np.where(_before(start, n), NAN, score)  # derive's score series starts at start
    weekly = np.round(_trailing_sum(own, start + HEALTH_SETTLE_DAYS - 1) / WEEK, 2)
    z, median = _robust_z(weekly, lo, health_from)
    z, median = np.round(z, 2), np.round(median, 2)
    out["health.anomaly_score"] = z
    out["health.score_7d_avg"] = weekly
    out["health.score_7d_baseline"] = median
    material = np.full(weekly.shape, HEALTH_MATERIAL_DROP)
    out["health.anomaly"] = anomaly.drop_flags(weekly, z, median, material)
    engagement = parts["health.engagement"]
    out["engagement.change_30d"] = engagement - _lag(engagement, 30, start)
    exp = model.expansion
    with np.errstate(invalid="ignore"):
        signal = interest > 0
        signal |= utilization >= exp.seat_utilization_pct_at_least
        signal |= growth >= exp.usage_growth_pct_at_least
    out["expansion.signal"] = signal.astype(np.float64)


def _extra(fact: DerivedFact, out: dict[str, F], counts: dict[str, F], start: I, n: int) -> F:
    """derive._extra, on the last day alone (`n` days in the grid)."""
    m = len(start)
    if isinstance(fact, WindowFact):
        series = out.get(fact.fact)
        if series is None:
            return np.full(m, NAN)
        lo = max(n - 1 - fact.days, 0)
        window = np.where(_before(start, n)[lo:], NAN, series[lo:])
        with np.errstate(all="ignore"), quiet():
            if fact.direction == "fell":
                return np.asarray(np.nanmax(window, axis=0) - series[-1], dtype=np.float64)
            return np.asarray(series[-1] - np.nanmin(window, axis=0), dtype=np.float64)
    assert isinstance(fact, SignalsFact)
    lo = max(n - fact.days, 0)
    sums = [counts[t][lo:].sum(axis=0) for t in fact.types]
    stacked = np.array([s > 0 for s in sums] if fact.counting == "types" else sums)
    return np.asarray(stacked.sum(axis=0), dtype=np.float64)


_BOOLEAN = {k for k, f in FACTS.items() if f.type == FactType.boolean}


def _to_records(
    accounts: list[Account], last: dict[str, F], model: HealthModel
) -> list[dict[str, Any]]:
    """FactFrame.record() of each account's last day."""
    keys = list(last)
    values = np.stack(list(last.values()), axis=1)  # accounts x keys
    present = ~np.isnan(values)
    objects = values.astype(object)
    # derived.norm() makes a whole number an int: those at once, the others one by one.
    with np.errstate(invalid="ignore"):
        whole = present & (np.abs(values) < 2**53) & (values == np.floor(values))
    objects[whole] = values[whole].astype(np.int64).astype(object)
    boolean = np.array([k in _BOOLEAN for k in keys])
    objects[:, boolean] = (values[:, boolean] != 0).astype(object)
    other = present & ~whole & ~boolean
    rest: list[float] = values[other].tolist()
    objects[other] = np.fromiter(map(_norm, rest), dtype=object, count=len(rest))
    scores: list[float] = last["health.score"].tolist()
    records = []
    for a, objs, pres, score in zip(accounts, objects, present, scores, strict=True):
        rec = account_facts(a)
        if score == score:
            rec["health.band"] = model.band(score)
        mask = pres.tolist()
        rec.update(zip(compress(keys, mask), compress(objs.tolist(), mask), strict=True))
        records.append(rec)
    return records


def _norm(value: float) -> float | int | None:
    """derived.norm() of a float, without its dispatch on the type (it is a few times faster, and
    a record holds a few dozen floats)."""
    if value in (_INF, -_INF):
        return None
    r = round(value, DECIMALS)
    return int(r) if r.is_integer() and abs(r) < 2**53 else r


_INF = float("inf")
