"""The facts a scheduler keeps between sweeps (scheduling/sweep_facts.py): each account's
record equals derive's from the stored rows, on the sample data set and on hostile rows
written past validation; after signals arrive (in and out of id order) and accounts change,
the next sweep reads only those and still equals derive; a sweep with them fires as one
without."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from numpy.testing import assert_array_equal
from sqlalchemy import func, insert, select

import factories
from csautomation.facts.catalog import FACTS
from csautomation.facts.derive import derive
from csautomation.facts.derived import DerivedFact, SignalsFact, WindowFact
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account
from csautomation.pipeline import SqlCooldowns
from csautomation.rules.batch import Columns
from csautomation.rules.runtime import RuleRuntime
from csautomation.sample.generate import generate
from csautomation.scheduling.sweep import sweep
from csautomation.scheduling.sweep_facts import SweepFacts
from csautomation.store.engine import table
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow, SignalRow
from scheduling.support import write_rules

ROOT = Path(__file__).parents[2]
END = date(2026, 11, 1)
MODEL = load_health_model()
SHIPPED = RuleRuntime([ROOT / "rules"], MODEL).derived
EXTRA: tuple[DerivedFact, ...] = (
    *SHIPPED,
    WindowFact("health.score", "fell", 30),
    WindowFact("usage.anomaly_score", "rose", 14),
    SignalsFact(("meeting", "support_ticket", "webinar"), 60, "occurrences"),
)


def reference(store: Store, accounts: Sequence[Account], day: date) -> list[Any]:
    """derive's record of each account from its stored rows, or what derive raised."""
    reader = FactsReader(store, MODEL)
    out: list[Any] = []
    for account in accounts:
        signals, _ = reader.history(account.id)
        try:
            out.append(derive(account, signals, day, MODEL, EXTRA).record())
        except Exception as exc:
            out.append(exc)
    return out


def assert_equal(got: Sequence[Any], want: Sequence[Any], accounts: Sequence[Account]) -> None:
    assert len(got) == len(want) == len(accounts)
    for account, g, w in zip(accounts, got, want, strict=True):
        if isinstance(w, Exception):
            assert isinstance(g, Exception), (account.id, g)
            assert (type(g), str(g)) == (type(w), str(w)), account.id
        else:
            # equal values of equal types in the same order (1 == 1.0 == True for ==)
            assert not isinstance(g, Exception), (account.id, g)
            assert [(k, type(v), v) for k, v in g.items()] == [
                (k, type(v), v) for k, v in w.items()
            ], account.id


def kept_records(kept: SweepFacts, day: date) -> tuple[list[Account], list[Any]]:
    accounts = [a for page in kept.pages(40) for a in page]
    return accounts, kept.records_or_errors([(a, day) for a in accounts], EXTRA)


def put(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as they may sit in a database: written past the intake's validation."""
    received = datetime(2026, 11, 2, tzinfo=UTC)
    values = [
        {"received_at": received, "idempotency_key": f"k{random.random()}", **r} for r in rows
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(table(SignalRow)), values)


def sample_store(store: Store, n: int = 60, days: int = 120) -> list[Account]:
    accounts, signals = generate(n, days, end=END)
    store.upsert_accounts(accounts)
    store.add_signals(signals)
    return accounts


def test_records_from_columns_equal_derive_on_the_sample_data(store: Store) -> None:
    sample_store(store)
    kept = SweepFacts(store, MODEL)
    accounts, got = kept_records(kept, END)
    assert kept.derived_from_columns == len(accounts) == 60  # none left to Signal objects
    assert_equal(got, reference(store, accounts, END), accounts)
    # and the FactsReader's batch path, which the sweep used before, agrees
    batch = FactsReader(store, MODEL).records_or_errors([(a, END) for a in accounts], EXTRA)
    assert_equal(got, batch, accounts)
    assert_columns_equal(kept, accounts, got)


def assert_columns_equal(kept: SweepFacts, accounts: Sequence[Account], got: list[Any]) -> None:
    """A rule's columns, made without the whole records (numbers straight from the
    arrays), are those of the records, in the same key order."""
    keys = [*FACTS, *(f.key for f in EXTRA)]
    view, errors = kept.facts([(a, END) for a in accounts], EXTRA)
    assert errors.keys() == {i for i, g in enumerate(got) if isinstance(g, Exception)}
    some = [i for i in range(len(accounts)) if i % 3 and i not in errors]
    cols = view.columns(some, keys)
    want = Columns.from_records([got[i] for i in some], keys)
    assert cols.size == want.size == len(some)
    assert list(cols.numbers) == list(want.numbers) and cols.strings.keys() == want.strings.keys()
    for key, values in want.numbers.items():
        assert_array_equal(cols.numbers[key], values, err_msg=key)
    for key, (codes, dictionary) in want.strings.items():
        assert_array_equal(cols.strings[key][0], codes, err_msg=key)
        assert cols.strings[key][1] == dictionary
    assert cols.lists == want.lists
    # and the records made together are those made one at a time
    assert view.records(some[::-1]) == [view.record(i) for i in some[::-1]]


def _at(day: date, rnd: random.Random) -> datetime:
    zone = rnd.choice(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    )
    return datetime.combine(day, time(rnd.choice([0, 12, 23]), rnd.randint(0, 59)), tzinfo=zone)


# payloads derive may read differently from a validated one: each (type, payload)
HOSTILE: list[tuple[str, Any]] = [
    ("usage_daily", {"logins": "5", "active_users": 2}),
    ("usage_daily", {"logins": 5, "active_users": "x"}),
    ("usage_daily", {"logins": 5, "active_users": "7"}),
    ("usage_daily", {"active_users": 3}),
    ("usage_daily", {"logins": 3, "active_users": 2}),  # feature_events defaults to 0
    ("usage_daily", {"logins": 3, "active_users": 2, "feature_events": None}),
    ("usage_daily", {"logins": 10**20, "active_users": 2**60}),
    ("usage_daily", {"logins": True, "active_users": 2.5, "feature_events": -4}),
    ("usage_daily", {"logins": float("nan"), "active_users": 1}),
    ("usage_daily", [1, 2]),
    ("usage_daily", None),
    ("meeting", {}),
    ("meeting", {"status": 5}),
    ("meeting", {"status": None}),
    ("support_ticket", {"priority": ["urgent"]}),
    ("support_ticket", {}),
    ("support_escalation", [1]),
    ("expansion_interest", "anything"),
    ("nps_response", {"score": "7"}),
    ("nps_response", {"score": 1e308}),
    ("outcome_review", {"goals_met_pct": 33.333333333333336}),
    ("outcome_review", {"goals_met_pct": None}),
    ("stakeholder_change", {"change": "left"}),
    ("stakeholder_change", {"change": "joined"}),
    ("stakeholder_change", {"change": "left", "role": "exec_sponsor"}),
    ("churn_prediction", {"probability": 0.1 + 0.2}),
    ("churn_prediction", {"probability": "high"}),
    ("contract_update", {"renewal_date": "soon"}),
    ("contract_update", {"renewal_date": 20271231, "arr": "1000"}),
    ("contract_update", {"renewal_date": "", "arr": None, "seats": 2**60}),
    ("contract_update", {"renewal_date": False, "arr": 1e300, "seats": 3}),
    ("contract_update", {"renewal_date": "2027-03-01", "arr": 5.5, "seats": 12}),
    ("contract_update", []),
    ("webinar", {"attended": True}),
]


@pytest.mark.parametrize(("seed", "in_sql"), [(1, True), (2, True), (3, False), (4, False)])
def test_records_from_columns_equal_derive_on_hostile_rows(
    store: Store, seed: int, in_sql: bool
) -> None:
    """Each account: a sample history plus a few hostile rows (other time zones, two of a
    day's values, out of time order, after the day), and some accounts with no rows."""
    rnd = random.Random(seed)
    accounts = sample_store(store, 40, 100)
    accounts.append(factories.account(id="EMPTY", name="No signals yet"))
    store.upsert_accounts(accounts[-1:])
    rows: list[dict[str, Any]] = []
    # PostgreSQL's json type refuses NaN: such a row exists only in SQLite
    hostile = [h for h in HOSTILE if store.engine.dialect.name == "sqlite" or "nan" not in repr(h)]
    for account in accounts[:-1]:
        for _ in range(rnd.choice([0, 1, 1, 2, 3])):
            kind, payload = rnd.choice(hostile)
            back = rnd.choice([-1, 0, 0, 1, 5, 40, 99, 500])  # -1: after the day swept
            at = _at(END - timedelta(days=back), rnd)
            rows.extend(
                {"account_id": account.id, "type": kind, "occurred_at": at, "payload": payload}
                for _ in range(rnd.choice([1, 1, 2]))  # twice at one moment: the later row
            )
    rnd.shuffle(rows)
    put(store, rows)
    kept = SweepFacts(store, MODEL)
    # payload fields extracted by SQLite, or parsed in Python (as on PostgreSQL)
    kept.columns.in_sql = in_sql and store.engine.dialect.name == "sqlite"
    swept, got = kept_records(kept, END)
    assert sorted(a.id for a in swept) == sorted(a.id for a in accounts)
    assert kept.derived_from_signals > 0 and kept.derived_from_columns > 0
    want = reference(store, swept, END)
    assert any(isinstance(w, Exception) for w in want)  # some that derive refuses
    assert_equal(got, want, swept)
    assert_columns_equal(kept, swept, got)


@pytest.mark.parametrize("in_sql", [True, False])
def test_the_next_sweep_reads_only_what_changed_and_still_equals_derive(
    store: Store, in_sql: bool
) -> None:
    accounts = sample_store(store, 30, 100)
    high = 10**6  # a row with a high id, so that a row committed late can have a lower one
    if store.engine.dialect.name == "postgresql":  # the sequence goes on above it too
        with store.engine.begin() as conn:
            conn.execute(select(func.setval(func.pg_get_serial_sequence("signals", "id"), high)))
    put(
        store,
        [
            {
                "id": high,
                "account_id": accounts[0].id,
                "type": "support_escalation",
                "occurred_at": datetime(2026, 10, 1, tzinfo=UTC),
                "payload": {},
            }
        ],
    )
    kept = SweepFacts(store, MODEL)
    kept.columns.in_sql = in_sql and store.engine.dialect.name == "sqlite"
    kept_records(kept, END)
    held = sum(v[0] for v in kept.columns.versions.values())
    with store.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(table(SignalRow))).scalar_one()
    assert held == stored == sum(len(h) for h in kept.columns.histories.values())
    assert kept.columns.refreshes == 0

    day = END + timedelta(days=1)
    rnd = random.Random(5)
    new_day = [
        {
            "account_id": a.id,
            "type": "usage_daily",
            "occurred_at": _at(day, rnd),
            "payload": {"logins": rnd.randint(0, 40), "active_users": 3, "feature_events": 1},
        }
        for a in accounts
    ]
    # and rows in id order but not in time order: the later one first; one before the
    # account's held rows, whose value the held row of its day overrides (from 09:00)
    late = [
        {
            "account_id": accounts[3].id,
            "type": "support_ticket",
            "occurred_at": datetime.combine(END - timedelta(days=back), time(9), tzinfo=UTC),
            "payload": {"priority": "high"},
        }
        for back in (10, 20)
    ]
    late.append(
        {
            "account_id": accounts[4].id,
            "type": "usage_daily",
            "occurred_at": datetime.combine(END - timedelta(days=5), time(6), tzinfo=UTC),
            "payload": {"logins": 1, "active_users": 999},
        }
    )
    put(store, late + new_day)
    assert kept.columns.refresh() == len(accounts) + 3  # only the new rows were read
    assert kept.columns.refreshes == 0
    # a row committed out of id order (below the newest read), an older day's at that
    put(
        store,
        [
            {
                "id": 7_000,
                "account_id": accounts[1].id,
                "type": "churn_prediction",
                "occurred_at": datetime(2026, 9, 20, 3, tzinfo=UTC),
                "payload": {"probability": 0.9},
            }
        ],
    )
    changed = accounts[2].model_copy(update={"seats": 999, "name": "Renamed"})
    new = factories.account(id="ZNEW", name="New")
    store.upsert_accounts([changed, new])
    put(
        store,
        [
            {
                "account_id": "ZNEW",
                "type": "usage_daily",
                "occurred_at": _at(day, rnd),
                "payload": {"logins": 4, "active_users": 2},
            }
        ],
    )
    now, got = kept_records(kept, day)
    assert kept.columns.refreshes == 1  # the count fell short: accounts read again
    assert sum(v[0] for v in kept.columns.versions.values()) == held + len(accounts) + 5
    assert {a.id: a for a in now}[changed.id] == changed and now[-1] == new
    assert_equal(got, reference(store, now, day), now)


def test_a_sweep_with_kept_facts_fires_as_one_without(tmp_path: Path, store: Store) -> None:
    sample_store(store, 60, 100)
    runtime = RuleRuntime([write_rules(tmp_path / "rules")], MODEL, cooldowns=SqlCooldowns(store))
    at = datetime(2026, 11, 2, 6, tzinfo=UTC)
    t = table(RuleFiringRow)
    runs = []
    for kept in (None, SweepFacts(store, MODEL)):
        result = sweep(store, runtime, ["usage-drop"], at, kept=kept)
        again = sweep(store, runtime, ["usage-drop"], at, kept=kept)
        with store.engine.begin() as conn:
            columns = (t.c.rule_id, t.c.account_id, t.c.window, t.c.explain)
            fired = [tuple(r) for r in conn.execute(t.select().with_only_columns(*columns))]
            conn.execute(t.delete())
        runs.append((result.accounts, result.fired, again.fired, again.suppressed, fired))
    runtime.close()
    plain, kept_ = runs
    assert plain[1] > 0 and plain[2:4] == (0, plain[1])  # again: all inside their cooldowns
    assert plain == kept_
