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
derive's order (numeric.health_scores runs on the flattened grid), so the records are
equal, not merely close; the one change of order is in the 7-day mean of active users, whose
sums are of whole numbers and so exact in any order.

derive.py stays the reference (and the backtest's path); tests/facts/test_derive_many.py
holds the two equal on random histories and on the sample data set. grid.py builds the grid
from the signals, columns.py holds derive's helpers down its columns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import compress
from typing import Any

import numpy as np

from csautomation.facts import anomaly, columns
from csautomation.facts.anomaly import GAP, MIN_BASELINE, WEEK
from csautomation.facts.catalog import FACTS, FactType
from csautomation.facts.columns import (
    before,
    days_since,
    ffill,
    lag,
    robust_z,
    roll,
    running,
    trailing_sum,
    window_sum,
)
from csautomation.facts.days import AsOf, counted, evaluation_day
from csautomation.facts.derive import (
    CHANGED_DAYS,
    HEALTH_MATERIAL_DROP,
    HEALTH_SETTLE_DAYS,
    MAX_LOOKBACK,
    USAGE_MATERIAL_DROP,
    account_facts,
)
from csautomation.facts.derived import DECIMALS, DerivedFact, SignalsFact, WindowFact
from csautomation.facts.grid import Daily, Updates, gather
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal
from csautomation.facts.numeric import NAN, B, F, I, days_between, health_scores, pct_change, quiet

Item = tuple[Account, Sequence[Signal], AsOf]


def derive_records(
    items: Sequence[Item],
    model: HealthModel,
    extra: Sequence[DerivedFact] = (),
) -> list[dict[str, Any]]:
    """For each (account, signals, as_of): exactly
    derive(account, signals, as_of, model, extra).record()."""
    by_day: dict[date, list[int]] = defaultdict(list)
    histories: list[Sequence[Signal]] = []
    for i, (_, signals, as_of) in enumerate(items):
        by_day[evaluation_day(as_of)].append(i)
        # an instant reads the signals up to it; a day (read at its end) all of its own
        histories.append(counted(signals, as_of) if isinstance(as_of, datetime) else signals)
    count_types = {t for f in extra if isinstance(f, SignalsFact) for t in f.types}
    records: list[dict[str, Any]] = [{} for _ in items]
    for as_of, idx in by_day.items():
        if as_of.toordinal() < MAX_LOOKBACK:  # derive's first day would be before year 1
            raise OverflowError("date value out of range")
        updates = gather([histories[i] for i in idx], as_of, count_types)
        got = records_of(updates, [items[i][0] for i in idx], as_of, model, extra)
        for i, rec in zip(idx, got, strict=True):
            records[i] = rec
    return records


def records_of(
    updates: Updates,
    accounts: Sequence[Account],
    as_of: date,
    model: HealthModel,
    extra: Sequence[DerivedFact] = (),
) -> list[dict[str, Any]]:
    """The records of the accounts whose signals `updates` holds (grid.gather's, or
    columnar.gather_columns'), in their order, as of the day `as_of`."""
    records: list[dict[str, Any]] = [{} for _ in accounts]
    for members, daily, start in _grids(updates, as_of):
        got = _records([accounts[j] for j in members], as_of, daily, start, model, extra)
        for j, rec in zip(members, got, strict=True):
            records[j] = rec
    return records


def _grids(updates: Updates, as_of: date) -> Iterator[tuple[list[int], Daily, I]]:
    """The grids of a batch: its members (by position), their daily arrays, their starts."""
    if as_of.toordinal() < MAX_LOOKBACK:  # derive's first day would be before year 1
        raise OverflowError("date value out of range")
    # Histories of very different lengths get separate grids, so that a few long ones
    # do not pad a batch of short ones with hundreds of empty days.
    buckets: dict[int, list[int]] = defaultdict(list)
    for j, n in enumerate(updates.days):
        buckets[max(6, (n - 1).bit_length())].append(j)
    for bucket in buckets.values():
        step = max(1, columns.MAX_CELLS // max(updates.days[j] for j in bucket))
        for k in range(0, len(bucket), step):
            members = bucket[k : k + step]
            daily, start = updates.grid(members)
            yield members, daily, start


@dataclass(frozen=True)
class LastDay:
    """The last day's facts of a batch of accounts as arrays (NaN: missing), an entry per
    account in order; records are made only for the accounts, and facts, asked for (making
    a record costs about as much as deriving its facts)."""

    accounts: Sequence[Account]
    values: dict[str, F]
    model: HealthModel

    def records(
        self, which: Sequence[int] | None = None, keys: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """derive(...).record() of the accounts at `which` (default: all); with `keys`, only
        those facts of it and the account's own (what a rule's columns read of it)."""
        idx = list(range(len(self.accounts)) if which is None else which)
        if not idx:
            return []
        wanted = self.values.items()
        if keys is not None:  # the score stays: the record's health band is read from it
            wanted = {k: v for k, v in wanted if k in keys or k == "health.score"}.items()
        picked = [self.accounts[i] for i in idx]
        return _to_records(picked, {k: v[idx] for k, v in wanted}, self.model)


def last_day_of(
    updates: Updates,
    accounts: Sequence[Account],
    as_of: date,
    model: HealthModel,
    extra: Sequence[DerivedFact] = (),
) -> LastDay:
    """`records_of`, as arrays: the records are made when asked for."""
    values: dict[str, F] = {}
    for members, daily, start in _grids(updates, as_of):
        last = _last_day([accounts[j] for j in members], as_of, daily, start, model, extra)
        for key, v in last.items():  # every grid has the same keys, in the same order
            values.setdefault(key, np.full(len(accounts), NAN))[members] = v
    return LastDay(accounts, values, model)


_USAGE_ANOMALY = {"usage.anomaly_score", "usage.logins_7d_baseline", "usage.anomaly"}
_HEALTH_ANOMALY = {"health.anomaly_score", "health.score_7d_baseline", "health.anomaly"}


def _records(
    accounts: list[Account],
    as_of: date,
    d: Daily,
    start: I,
    model: HealthModel,
    extra: Sequence[DerivedFact],
) -> list[dict[str, Any]]:
    """derive(...).record() for the accounts of one grid."""
    return _to_records(accounts, _last_day(accounts, as_of, d, start, model, extra), model)


def _last_day(
    accounts: list[Account],
    as_of: date,
    d: Daily,
    start: I,
    model: HealthModel,
    extra: Sequence[DerivedFact],
) -> dict[str, F]:
    """The last day's facts of the accounts of one grid, by key in the record's order."""
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
    return last


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
    d: Daily,
    start: I,
    lo: I,
    usage_from: int,
    health_from: int,
    model: HealthModel,
) -> None:
    """derive._derive's facts on the grid into `out`, in its order (the record's key order)."""
    seats_f = _contract_facts(out, accounts, as_of, d)
    utilization, growth = _usage_facts(out, d, start, lo, usage_from, seats_f)
    interest = _engagement_facts(out, d, start)
    _health_facts(out, d, start, lo, health_from, model)
    exp = model.expansion
    with np.errstate(invalid="ignore"):
        signal = interest > 0
        signal |= utilization >= exp.seat_utilization_pct_at_least
        signal |= growth >= exp.usage_growth_pct_at_least
    out["expansion.signal"] = signal.astype(np.float64)


def _contract_facts(out: _Facts, accounts: list[Account], as_of: date, d: Daily) -> F:
    """The account and contract facts into `out`; returns the seats, day by day."""
    n, m = d.logins.shape
    to_end = (n - 1 - np.arange(n))[:, None]  # days from each row to as_of

    def per_account(values: Iterable[float]) -> F:
        return np.fromiter(values, dtype=np.float64, count=m)

    renewal_f = ffill(d.renewal)
    renewal = per_account(days_between(as_of, a.renewal_date) for a in accounts)
    renewal_f = np.where(np.isnan(renewal_f), renewal, renewal_f)
    seats_f = ffill(d.seats)
    seats_f = np.where(np.isnan(seats_f), per_account(a.seats for a in accounts), seats_f)
    arr_f = ffill(d.arr)
    arr_f = np.where(
        np.isnan(arr_f), per_account(NAN if a.arr is None else a.arr for a in accounts), arr_f
    )
    out["account.arr"] = arr_f
    out["account.seats"] = seats_f
    tenure = per_account(-days_between(as_of, a.customer_since) for a in accounts)
    out["account.tenure_days"] = tenure - to_end
    out["contract.arr"] = arr_f
    out["contract.days_to_renewal"] = renewal_f + to_end
    return seats_f


def _usage_facts(
    out: _Facts, d: Daily, start: I, lo: I, usage_from: int, seats_f: F
) -> tuple[F, F]:
    """The usage facts into `out`; returns the seat utilization and the usage growth."""
    n = d.logins.shape[0]
    # derive leaves the usage facts out for an account without usage signals: here NaN.
    has_usage: B = np.asarray(d.seen_usage.any(axis=0))
    logins = running(d.logins)
    l30 = np.where(has_usage, roll(logins, 30, start), NAN)
    out["usage.logins_7d"] = np.where(has_usage, roll(logins, 7, start), NAN)
    out["usage.logins_30d"] = l30
    out["usage.logins_change_30d_pct"] = pct_change(l30, lag(l30, 30, start))
    # derive's nanmean over 7 days. Active users are whole numbers (the payload validates
    # them as int), so the sums are exact in whatever order they are added.
    seen = ~np.isnan(d.users)
    with np.errstate(invalid="ignore"):
        au = window_sum(np.where(seen, d.users, 0.0), 7) / window_sum(seen * 1.0, 7)
    au = np.where(np.isnan(au), ffill(d.users), au)
    out["usage.active_users"] = au
    out["usage.active_users_change_30d_pct"] = pct_change(au, lag(au, 30, start))
    utilization = au / seats_f * 100.0
    out["usage.seat_utilization_pct"] = utilization
    features = roll(running(d.features), 30, start)
    out["usage.feature_events_30d"] = np.where(has_usage, features, NAN)
    out["usage.days_since_last_login"] = days_since(d.logins > 0)
    growth = pct_change(au, lag(au, 90, start))
    out["expansion.usage_growth_pct"] = growth
    first_usage = np.where(has_usage, np.argmax(d.seen_usage, axis=0), n)
    weekly = trailing_sum(d.logins, first_usage)
    z, median = robust_z(weekly, lo, usage_from)
    z = np.round(z, 2)  # the flag reads the score the facts show
    out["usage.anomaly_score"] = z
    out["usage.logins_7d_baseline"] = median
    out["usage.anomaly"] = anomaly.drop_flags(weekly, z, median, USAGE_MATERIAL_DROP * median)
    return utilization, growth


def _engagement_facts(out: _Facts, d: Daily, start: I) -> F:
    """Meetings, support, outcomes, stakeholders, churn and expansion interest into `out`;
    returns the expansion interest."""
    escalations = running(d.escalations)
    out["engagement.meetings_attended_90d"] = roll(running(d.attended), 90, start)
    out["engagement.meetings_missed_90d"] = roll(running(d.missed), 90, start)
    out["engagement.nps"] = ffill(d.nps)
    out["engagement.days_since_last_meeting"] = days_since(d.attended > 0)
    out["support.tickets_30d"] = roll(running(d.tickets), 30, start)
    out["support.urgent_tickets_30d"] = roll(running(d.urgent), 30, start)
    out["support.escalations_30d"] = roll(escalations, 30, start)
    out["support.escalations_90d"] = roll(escalations, 90, start)
    out["outcomes.goals_met_pct"] = ffill(d.goals)
    champ_days = days_since(d.champion_left)
    out["stakeholders.champion_changed_days_ago"] = champ_days
    out["stakeholders.champion_changed"] = np.where(champ_days < CHANGED_DAYS, 1.0, 0.0)
    sponsor_days = days_since(d.sponsor_left)
    out["stakeholders.exec_sponsor_changed"] = np.where(sponsor_days < CHANGED_DAYS, 1.0, 0.0)
    churn_f = ffill(d.churn)
    out["churn.probability"] = churn_f
    out["churn.probability_change_30d"] = churn_f - lag(churn_f, 30, start)
    interest = roll(running(d.interest), 90, start)
    out["expansion.interest_90d"] = interest
    return interest


def _health_facts(
    out: _Facts, d: Daily, start: I, lo: I, health_from: int, model: HealthModel
) -> None:
    """The health score, its parts, trends and anomaly into `out`."""
    n, m = d.logins.shape
    # derive's own health_scores, on the grid flattened: it is elementwise, so the same numbers.
    metrics = {k: v.reshape(-1) for k, v in out.items() if k in out.series}
    flat_score, flat_parts = health_scores(metrics, model, n * m)
    score = flat_score.reshape(n, m)
    parts = {k: v.reshape(n, m) for k, v in flat_parts.items()}
    for k, v in parts.items():
        out[k] = v
    out["health.score"] = score
    for w in (7, 30, 90):
        out[f"health.trend_{w}d"] = score - lag(score, w, start)
    own = np.where(before(start, n), NAN, score)  # derive's score series starts at start
    weekly = np.round(trailing_sum(own, start + HEALTH_SETTLE_DAYS - 1) / WEEK, 2)
    z, median = robust_z(weekly, lo, health_from)
    z, median = np.round(z, 2), np.round(median, 2)
    out["health.anomaly_score"] = z
    out["health.score_7d_avg"] = weekly
    out["health.score_7d_baseline"] = median
    material = np.full(weekly.shape, HEALTH_MATERIAL_DROP)
    out["health.anomaly"] = anomaly.drop_flags(weekly, z, median, material)
    engagement = parts["health.engagement"]
    out["engagement.change_30d"] = engagement - lag(engagement, 30, start)


def _extra(fact: DerivedFact, out: dict[str, F], counts: dict[str, F], start: I, n: int) -> F:
    """derive._extra, on the last day alone (`n` days in the grid)."""
    m = len(start)
    if isinstance(fact, WindowFact):
        series = out.get(fact.fact)
        if series is None:
            return np.full(m, NAN)
        lo = max(n - fact.days, 0)  # the window: today and the days-1 before
        window = np.where(before(start, n)[lo:], NAN, series[lo:])
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
