"""Anomaly facts: a robust z-score of 7-day aggregates against the account's own eight weeks."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csautomation.facts import anomaly
from csautomation.facts.derive import derive
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal

END = date(2026, 11, 1)  # a Sunday
MODEL = load_health_model()


def account() -> Account:
    return Account.model_validate(
        dict(
            id="ACME",
            name="Acme",
            tier="enterprise",
            arr=100000,
            seats=50,
            owner="csm-01",
            manager="mgr-01",
            renewal_date=date(2027, 6, 1),
            customer_since=date(2023, 1, 1),
        )
    )


def daily_logins(days: int, seed: int = 1, weekend: float = 0.3) -> np.ndarray[Any, Any]:
    """A noisy weekday/weekend pattern ending on END: ~100 a weekday, ~30 a weekend day."""
    rng = np.random.default_rng(seed)
    back = np.arange(days - 1, -1, -1)
    weekday = np.array([(END - timedelta(days=int(b))).weekday() for b in back])
    level = np.where(weekday >= 5, 100 * weekend, 100.0)
    return np.round(level * rng.uniform(0.85, 1.15, days))


def signals(logins: np.ndarray[Any, Any], as_of: date = END) -> list[Signal]:
    n = len(logins)
    return [
        Signal(
            type="usage_daily",
            account_id="ACME",
            payload={"logins": int(x), "active_users": max(1, int(x) // 3)},
            occurred_at=datetime.combine(as_of - timedelta(days=n - 1 - i), time(12), tzinfo=UTC),
        )
        for i, x in enumerate(logins)
    ]


def usage_facts(logins: np.ndarray[Any, Any], as_of: date = END) -> dict[str, Any]:
    rec = derive(account(), signals(logins, as_of), as_of, MODEL).record()
    return {k: v for k, v in rec.items() if k.startswith("usage.")}


# -- the maths --------------------------------------------------------------------------------


def test_modified_z_matches_the_formula_on_a_known_baseline() -> None:
    x = np.array([10.0, 11, 12, 12, 13, 14, 12] * 8 + [0.0] * 6 + [5.0])
    z, median = anomaly.robust_z(x)
    base = x[-63:-7]
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    assert median[-1] == med
    assert z[-1] == pytest.approx(0.6745 * (5.0 - med) / mad)


def test_a_weekly_pattern_cancels_out_of_the_score() -> None:
    rng = np.random.default_rng(5)
    days = 150
    noise = rng.normal(0, 8, days)
    weekday = np.array([(END - timedelta(days=days - 1 - i)).weekday() for i in range(days)])
    pattern = np.where(weekday >= 5, 25.0, 100.0) + 10 * (weekday == 0)  # Mondays busiest
    seasonal, _ = anomaly.robust_z(anomaly.trailing_sum(noise + pattern))
    plain, _ = anomaly.robust_z(anomaly.trailing_sum(noise + 50))
    np.testing.assert_allclose(seasonal, plain, atol=1e-9)


def test_steady_weekly_seasonality_gives_no_anomaly_on_any_day() -> None:
    weekly = anomaly.trailing_sum(daily_logins(180))
    z, median = anomaly.robust_z(weekly)
    known = ~np.isnan(z)
    assert known[-100:].all()
    assert np.median(np.abs(z[known])) < 1.0  # a typical day is unremarkable
    flags = anomaly.drop_flags(weekly, z, median, 0.5 * median)
    assert np.nansum(flags) == 0


@pytest.mark.parametrize("as_of", [END, END - timedelta(days=1)], ids=["sunday", "saturday"])
def test_weekends_are_not_anomalies(as_of: date) -> None:
    facts = usage_facts(daily_logins(120), as_of)
    assert facts["usage.anomaly"] is False
    assert abs(facts["usage.anomaly_score"]) < anomaly.THRESHOLD
    # a single day's comparison would see the weekend as a 70% drop; the 7-day sum does not
    assert facts["usage.logins_7d"] == pytest.approx(facts["usage.logins_7d_baseline"], rel=0.2)


def test_a_sudden_drop_flags_within_days() -> None:
    logins = daily_logins(120)
    logins[-5:] = np.round(logins[-5:] * 0.1)  # 90% gone since Wednesday
    facts = usage_facts(logins)
    assert facts["usage.anomaly"] is True
    assert facts["usage.anomaly_score"] < -anomaly.THRESHOLD
    assert facts["usage.logins_7d"] < 0.5 * facts["usage.logins_7d_baseline"]


def test_an_unusual_but_small_dip_is_not_material() -> None:
    logins = np.full(120, 100.0)
    logins[::3] += 1  # a very steady account: MAD of the weekly sums is tiny
    logins[-7:] = 80  # 20% down: far outside its own range, but not half the usage gone
    facts = usage_facts(logins)
    assert facts["usage.anomaly_score"] < -anomaly.THRESHOLD
    assert facts["usage.anomaly"] is False


def test_a_spike_up_scores_high_but_is_not_an_anomaly() -> None:
    logins = daily_logins(120)
    logins[-5:] *= 4
    facts = usage_facts(logins)
    assert facts["usage.anomaly_score"] > anomaly.THRESHOLD
    assert facts["usage.anomaly"] is False


def test_flat_series_never_divides_by_zero() -> None:
    # filterwarnings = error: a division by zero would fail the test
    flat = np.full(100, 50.0)
    z, median = anomaly.robust_z(flat)
    assert np.all(z[-30:] == 0) and np.all(median[-30:] == 50)
    flags = anomaly.drop_flags(flat, z, median, np.full(100, 10.0))
    assert np.all(flags[-30:] == 0)


def test_flat_baseline_then_a_cliff_has_no_score_but_flags_on_materiality() -> None:
    x = np.full(100, 700.0)
    x[-1] = 200.0
    z, median = anomaly.robust_z(x)
    assert math.isnan(z[-1]) and median[-1] == 700  # no spread to measure against
    flags = anomaly.drop_flags(x, z, median, 0.5 * median)
    assert flags[-1] == 1.0
    x[-1] = 690.0  # off the constant, but not material
    z, median = anomaly.robust_z(x)
    assert anomaly.drop_flags(x, z, median, 0.5 * median)[-1] == 0.0
    x[-1] = 2000.0  # up is never a drop
    z, median = anomaly.robust_z(x)
    assert anomaly.drop_flags(x, z, median, 0.5 * median)[-1] == 0.0


def test_mad_zero_falls_back_to_the_scaled_mean_absolute_deviation() -> None:
    base = np.full(56, 100.0)
    base[:10] = 110.0  # most of the baseline is one value: MAD is 0, the mean deviation is not
    x = np.concatenate((np.zeros(7), base, np.full(6, 100.0), [40.0]))  # baseline: x[7:63]
    z, _ = anomaly.robust_z(x)
    mean_ad = 10 * 10 / 56
    assert z[-1] == pytest.approx((40 - 100) / (1.253314 * mean_ad))


def test_too_little_history_gives_missing_not_made_up_scores() -> None:
    weekly = anomaly.trailing_sum(daily_logins(40))
    z, median = anomaly.robust_z(weekly)
    assert np.isnan(z).all() and np.isnan(median).all()
    # 41 days: the first day with four weeks of baseline ending a week before it
    weekly = anomaly.trailing_sum(daily_logins(41))
    z, _ = anomaly.robust_z(weekly)
    assert np.isnan(z[:-1]).all() and not math.isnan(z[-1])
    for days in (20, 40):
        facts = usage_facts(daily_logins(days))
        assert "usage.anomaly" not in facts and "usage.anomaly_score" not in facts
    assert "usage.anomaly" in usage_facts(daily_logins(41))


def test_days_before_the_first_usage_signal_are_not_zero_logins() -> None:
    # a contract update 200 days ago, usage only for the last 30: no baseline of zeros
    history = signals(daily_logins(30)) + [
        Signal(
            type="contract_update",
            account_id="ACME",
            payload={"seats": 50},
            occurred_at=datetime.combine(END - timedelta(days=200), time(12), tzinfo=UTC),
        )
    ]
    rec = derive(account(), history, END, MODEL).record()
    assert "usage.anomaly_score" not in rec and rec["usage.logins_7d"] > 0


def test_health_anomaly_waits_for_a_settled_score() -> None:
    for days, present in ((129, False), (130, True)):
        rec = derive(account(), signals(daily_logins(days)), END, MODEL).record()
        assert ("health.anomaly" in rec) is present, days
        assert ("health.anomaly_score" in rec) is present, days
    assert rec["health.anomaly"] is False


def test_a_usage_collapse_shows_as_a_health_anomaly() -> None:
    logins = daily_logins(200)
    logins[-20:] = 0
    rec = derive(account(), signals(logins), END, MODEL).record()
    assert rec["health.anomaly"] is True
    assert rec["health.score_7d_avg"] <= rec["health.score_7d_baseline"] - 10
    assert rec["health.anomaly_score"] < -anomaly.THRESHOLD


# -- properties -------------------------------------------------------------------------------

series = st.lists(st.integers(0, 1000), min_size=70, max_size=120).map(
    lambda xs: np.array(xs, dtype=np.float64)
)


@settings(max_examples=200, deadline=None)
@given(series, st.floats(0.01, 1000), st.integers(-10_000, 10_000))
def test_the_score_ignores_the_units_and_the_level(x: Any, scale: float, shift: int) -> None:
    z, _ = anomaly.robust_z(x)
    z_scaled, _ = anomaly.robust_z(x * scale)
    z_shifted, _ = anomaly.robust_z(x + shift)
    z_flipped, _ = anomaly.robust_z(-x)
    np.testing.assert_allclose(z_scaled, z, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(z_shifted, z, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(z_flipped, -z, rtol=1e-9, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(series, st.integers(0, 120))
def test_computing_from_a_later_day_changes_nothing_after_it(x: Any, start: int) -> None:
    full, full_median = anomaly.robust_z(x)
    part, part_median = anomaly.robust_z(x, from_index=start)
    np.testing.assert_array_equal(part[start:], full[start:])
    np.testing.assert_array_equal(part_median[start:], full_median[start:])
    assert np.isnan(part[:start]).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 9))
def test_derived_usage_score_is_the_same_for_k_times_the_logins(seed: int, k: int) -> None:
    logins = daily_logins(90, seed)
    one = usage_facts(logins)
    many = usage_facts(logins * k)
    assert many["usage.anomaly_score"] == pytest.approx(one["usage.anomaly_score"], abs=0.01)
    assert many["usage.anomaly"] == one["usage.anomaly"]


# -- both paths read the same facts -----------------------------------------------------------


def test_streaming_record_is_the_backtest_frame_day_by_day() -> None:
    logins = daily_logins(200, seed=3)
    logins[-12:] = np.round(logins[-12:] * 0.15)  # a cliff inside the backtest period
    history = signals(logins)
    frame = derive(account(), history, END, MODEL, start=END - timedelta(days=40))
    assert np.nansum(frame.numbers["usage.anomaly"]) > 0
    assert not np.isnan(frame.numbers["health.anomaly_score"]).any()
    for back in range(0, 41):
        day = END - timedelta(days=back)
        single = derive(account(), history, day, MODEL).record()
        assert frame.record(frame.days.index(day)) == single, day
        assert "usage.anomaly_score" in single and "health.anomaly" in single


# -- the shipped rules on the demo data -------------------------------------------------------


def test_the_shipped_anomaly_rules_fire_on_few_sample_accounts() -> None:
    from pathlib import Path

    from csautomation.rules.backtest import backtest
    from csautomation.rules.loader import load_rules
    from csautomation.sample.generate import generate

    accounts, history = generate()
    ruleset = load_rules([Path(__file__).parents[2] / "rules"])
    rules = [r for r in ruleset.rules if r.id in ("usage-anomaly", "health-anomaly")]
    result = backtest(accounts, history, rules, MODEL, END, 90)
    usage_hit = result.accounts_hit["usage-anomaly"]
    # the generator's dozen overnight cliffs, plus the steepest of its gradual declines
    assert 10 <= len(usage_hit) <= 0.1 * len(accounts)
    assert sum(result.fires["usage-anomaly"]) == len(usage_hit)  # one firing per cliff
    assert len(result.accounts_hit["health-anomaly"]) <= 0.1 * len(accounts)
