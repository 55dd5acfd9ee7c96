"""The pipeline's batch path (derive_records) gives exactly derive(...).record(), account by
account: random histories of every signal type, and the sample data set."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import factories
from csautomation.facts import columns
from csautomation.facts.catalog import FACTS, FactType
from csautomation.facts.derive import MAX_LOOKBACK, derive, group_by_account
from csautomation.facts.derive_many import derive_records
from csautomation.facts.derived import DerivedFact, SignalsFact, WindowFact
from csautomation.facts.health import HealthModel, load_health_model
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.rules.runtime import RuleRuntime
from csautomation.sample.generate import generate

END = date(2026, 11, 1)
ROOT = Path(__file__).parents[2]
DEFAULT = load_health_model()
# Anomaly facts as health metrics make the health score depend on the usage score on every
# day of the look-back, not just the last; zero weights leave components out of the score.
ANOMALY_METRICS = HealthModel.model_validate(
    DEFAULT.model_dump()
    | {
        "weights": {
            "product_usage": 40,
            "engagement": 0,
            "business_outcomes": 20,
            "account_characteristics": 0,
            "support": 10,
        },
        "components": DEFAULT.model_dump()["components"]
        | {
            "product_usage": [
                {"metric": "usage.anomaly_score", "bad": -5, "good": 0},
                {"metric": "usage.logins_7d_baseline", "bad": 0, "good": 500, "weight": 0.5},
                {"metric": "usage.active_users", "bad": 1, "good": 40},
            ],
            "business_outcomes": [
                {"metric": "churn.probability", "bad": 0.6, "good": 0.05},
                {"metric": "contract.days_to_renewal", "bad": 0, "good": 120},
            ],
        },
    }
)
SHIPPED = RuleRuntime([ROOT / "rules"], DEFAULT).derived
SERIES = sorted(k for k, f in FACTS.items() if f.type is FactType.number and f.series)
TYPES = [t.value for t in SignalType]
OTHER_TYPES = [t for t in TYPES if t != "usage_daily"]
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


def assert_same(
    items: list[tuple[Account, list[Signal], date]], model: HealthModel, extra: Any
) -> None:
    got = derive_records(items, model, extra)
    assert len(got) == len(items)
    for (account, signals, as_of), rec in zip(items, got, strict=True):
        want = derive(account, signals, as_of, model, extra).record()
        # equal values of equal types, in the same order (1 == 1.0 == True for ==)
        assert [(k, type(v), v) for k, v in rec.items()] == [
            (k, type(v), v) for k, v in want.items()
        ], (account.id, as_of)


# -- random histories -------------------------------------------------------------------------


def _payload(kind: str, rnd: random.Random, level: float, day: date) -> dict[str, Any]:
    if kind == "usage_daily":
        users = max(0, round(level * rnd.uniform(0.5, 1.5)))
        p: dict[str, Any] = {"logins": users * rnd.randint(0, 4), "active_users": users}
        if rnd.random() < 0.8:
            p["feature_events"] = users * rnd.randint(0, 6)
        return p
    if kind == "meeting":
        return {"status": rnd.choice(["attended", "attended", "missed", "cancelled"])}
    if kind == "nps_response":
        return {"score": rnd.randint(0, 10)}
    if kind == "support_ticket":
        return {"priority": rnd.choice(["low", "normal", "high", "urgent"])}
    if kind == "outcome_review":
        return {"goals_met_pct": rnd.choice([rnd.randint(0, 100), rnd.uniform(0, 100), 100 / 3])}
    if kind == "stakeholder_change":
        role = rnd.choice(["champion", "exec_sponsor", "admin"])
        return {"role": role, "change": rnd.choice(["left", "left", "joined"])}
    if kind == "churn_prediction":
        return {"probability": rnd.choice([round(rnd.random(), 3), rnd.random(), 0.1 + 0.2])}
    if kind == "contract_update":
        p = {}
        if rnd.random() < 0.7:
            renewal = day + timedelta(days=rnd.randint(-30, 500))
            p["renewal_date"] = rnd.choice([renewal, renewal.isoformat()])
        if rnd.random() < 0.6:
            p["arr"] = rnd.choice([rnd.randint(0, 10**6), rnd.uniform(0, 10**6)])
        if rnd.random() < 0.6:
            p["seats"] = rnd.randint(1, 300)
        return p
    if kind == "support_escalation":
        return {"reason": "outage"}
    return {"source": "sales"}


@st.composite
def histories(draw: st.DrawFn, as_of: date) -> tuple[Account, list[Signal], date]:
    """An account and its signals: daily usage (or none, or gaps), a few of the other types,
    some days with two signals of a type, some signals after as_of, in order or shuffled."""
    length = draw(st.one_of(st.just(0), st.integers(1, 100), st.integers(1, 450)))
    quiet = draw(st.integers(0, 20))  # days without any signal before as_of
    usage = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    kinds = draw(st.lists(st.sampled_from(OTHER_TYPES), max_size=9, unique=True))
    seed = draw(st.integers(0, 2**32 - 1))
    rnd = random.Random(seed)
    zone = rnd.choice(ZONES)
    level = rnd.choice([0, 3, 30, 300])
    cliff = rnd.randint(0, 120)  # usage falls (or rises) this many days before as_of
    factor = rnd.choice([1.0, 0.1, 0.5, 3.0])
    events: list[tuple[int, str]] = []  # (days before as_of, type)
    for back in range(quiet, quiet + length):
        if rnd.random() < usage:
            events.append((back, "usage_daily"))
            if rnd.random() < 0.03:
                events.append((back, "usage_daily"))  # a second feed on the same day
    for kind in kinds:
        for _ in range(rnd.randint(1, max(1, length // 15))):
            back = quiet + rnd.randrange(max(length, 1))
            events.extend([(back, kind)] * (2 if rnd.random() < 0.1 else 1))
    events.extend((-rnd.randint(1, 30), rnd.choice(TYPES)) for _ in range(rnd.randint(0, 3)))
    if rnd.random() < 0.5:
        rnd.shuffle(events)
    else:
        events.sort(reverse=True)
    account_id = f"A{seed % 100_000}"
    signals = []
    for back, kind in events:
        day = as_of - timedelta(days=back)
        at = datetime.combine(day, time(rnd.choice([0, 9, 23]), rnd.randint(0, 59)), tzinfo=zone)
        scale = factor if back < cliff else 1.0
        payload = _payload(kind, rnd, level * scale * (0.4 if day.weekday() >= 5 else 1), day)
        signals.append(Signal(type=kind, account_id=account_id, occurred_at=at, payload=payload))
    drawn = factories.account(
        id=account_id,
        name=f"Account {account_id}",
        tier=rnd.choice(["enterprise", "mid_market", "smb"]),
        arr=rnd.choice([0.0, 12_000.0, rnd.uniform(1000, 500_000)]),
        seats=rnd.randint(1, 400),
        renewal_date=as_of + timedelta(days=rnd.randint(-20, 400)),
        customer_since=as_of - timedelta(days=rnd.randint(-10, 3000)),
        tags=tuple(rnd.sample(["strategic", "reference", "at-risk"], rnd.randint(0, 2))),
    )
    return drawn, signals, as_of


ANOMALY = ["usage.anomaly_score", "usage.logins_7d_baseline", "health.anomaly_score"]
window_facts = st.builds(
    WindowFact,
    st.one_of(st.sampled_from(SERIES), st.sampled_from([*ANOMALY, "health.score_7d_baseline"])),
    st.sampled_from(["fell", "rose"]),
    st.one_of(st.integers(1, 100), st.just(365)),
)
signal_facts = st.builds(
    lambda types, days, counting: SignalsFact(tuple(sorted(types)), days, counting),
    st.sets(st.sampled_from(TYPES), min_size=1, max_size=4),
    st.one_of(st.integers(1, 100), st.just(365)),
    st.sampled_from(["types", "occurrences"]),
)
extras = st.one_of(
    st.just(()),
    st.just(SHIPPED),
    st.lists(st.one_of(window_facts, signal_facts), min_size=1, max_size=4).map(tuple),
)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[Account, list[Signal], date]]:
    """Mostly one as_of for the batch, as in the pipeline; sometimes a few others."""
    as_of = draw(st.sampled_from([END, date(2027, 2, 28), date(2024, 2, 29)]))
    days = st.one_of(st.just(as_of), st.just(as_of), st.just(as_of - timedelta(days=1)))
    return draw(st.lists(days.flatmap(histories), min_size=1, max_size=8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from([DEFAULT, ANOMALY_METRICS]), extras)
def test_batch_records_are_the_single_account_records(
    items: list[tuple[Account, list[Signal], date]],
    model: HealthModel,
    extra: tuple[DerivedFact, ...],
) -> None:
    assert_same(items, model, extra)


# -- chosen cases -----------------------------------------------------------------------------


def _usage(account_id: str, days: Iterable[int], as_of: date = END, **payload: Any) -> list[Signal]:
    at = [datetime.combine(as_of - timedelta(days=b), time(12), tzinfo=UTC) for b in days]
    values = payload or {"logins": 100, "active_users": 25}
    return [
        Signal(type="usage_daily", account_id=account_id, occurred_at=t, payload=values) for t in at
    ]


def _account(account_id: str) -> Account:
    return factories.account(
        id=account_id,
        name=account_id,
        tier="smb",
        arr=5000.0,
        seats=30,
        renewal_date=END + timedelta(days=90),
        customer_since=date(2024, 1, 1),
    )


@pytest.mark.parametrize("cells", [columns.MAX_CELLS, 3000], ids=["one-grid", "cut-up"])
def test_histories_of_every_length_share_a_batch(
    monkeypatch: pytest.MonkeyPatch, cells: int
) -> None:
    """No signal, one day, under a week, the anomaly baseline, past MAX_LOOKBACK, in the future
    only, and a different as_of: each its own grid or row start, in one call; and the same
    with grids and anomaly baselines cut into small pieces."""
    monkeypatch.setattr(columns, "MAX_CELLS", cells)
    lengths = [0, 1, 6, 7, 34, 35, 60, 95, 96, 150, 151, 300, MAX_LOOKBACK, MAX_LOOKBACK + 50]
    items = [(_account(f"L{n}"), _usage(f"L{n}", range(n)), END) for n in lengths]
    items.append((_account("F"), _usage("F", range(-5, 0)), END))
    items.append((_account("D"), _usage("D", range(200)), END - timedelta(days=30)))
    anomaly_windows = [WindowFact(k, "fell", 40) for k in ANOMALY] + [*SHIPPED]
    assert_same(items, DEFAULT, anomaly_windows)
    assert derive_records([], DEFAULT, SHIPPED) == []


def test_the_last_value_of_a_day_wins_and_sums_add_up() -> None:
    history = _usage("S", range(40), logins=10, active_users=4)
    history += _usage("S", range(3), logins=5, active_users=9)  # a second feed, later
    history.insert(0, _usage("S", [0], logins=1, active_users=1)[0])  # and an earlier one
    rec = derive_records([(_account("S"), history, END)], DEFAULT)[0]
    assert rec["usage.logins_7d"] == 7 * 10 + 3 * 5 + 1
    assert rec["usage.active_users"] == round((3 * 9 + 4 * 4) / 7, 6)  # 9 a day, then 4
    assert_same([(_account("S"), history, END)], DEFAULT, ())


# -- the sample data set ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> tuple[list[Account], dict[str, list[Signal]], date]:
    accounts, signals = generate()
    return accounts, group_by_account(signals), max(s.day for s in signals)


@pytest.mark.parametrize("back", [0, 100], ids=["end", "100-days-before"])
def test_every_sample_account_gets_its_single_account_record(
    sample: tuple[list[Account], dict[str, list[Signal]], date], back: int
) -> None:
    accounts, by_account, end = sample
    as_of = end - timedelta(days=back)
    items = [(a, by_account.get(a.id, []), as_of) for a in accounts]
    assert_same(items, DEFAULT, SHIPPED)
