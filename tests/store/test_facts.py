"""The facts reader: cached histories and records that are never stale, on SQLite and
PostgreSQL, including rows that commit out of id order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session

from csautomation.facts.derive import derive
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal
from csautomation.store.facts import FactsReader, stored_signal
from csautomation.store.repo import Store, _signal_row
from factories import account

AS_OF = date(2026, 11, 1)


def usage(back: int, logins: int) -> Signal:
    return Signal(
        type="usage_daily",
        account_id="ACME",
        occurred_at=datetime.combine(AS_OF - timedelta(days=back), datetime.min.time(), UTC),
        payload={"logins": logins, "active_users": 1},
    )


def insert(store: Store, row_id: int, sig: Signal) -> None:
    """A row with a chosen id: what another writer's late commit looks like."""
    row = _signal_row(sig)
    row.id = row_id
    with Session(store.engine) as s:
        s.add(row)
        s.commit()


def keys(signals: list[Signal]) -> list[str]:
    return [s.idempotency_key for s in signals]


def test_history_is_read_in_full_once_then_extended(store: Store) -> None:
    store.upsert_accounts([account()])
    for back in range(10, 0, -1):
        store.add_signal(usage(back, 100))
    reader = FactsReader(store, load_health_model())
    first, v1 = reader.history("ACME")
    assert len(first) == 10 and v1[0] == 10
    assert reader.history("ACME") == (first, v1)  # unchanged: served from memory
    late = usage(20, 5)  # arrives last, happened first
    store.add_signal(late)
    second, v2 = reader.history("ACME")
    assert v2 == (11, v1[1] + 1)
    assert keys(second) == [late.idempotency_key, *keys(first)]  # kept in time order


def test_a_row_committed_out_of_id_order_is_never_missed(store: Store) -> None:
    store.upsert_accounts([account()])
    for i in range(1, 6):
        insert(store, i, usage(30 - i, 100))
    reader = FactsReader(store, load_health_model())
    assert reader.history("ACME")[1] == (5, 5)
    insert(store, 7, usage(10, 50))  # id 6 is still in another writer's transaction
    signals, version = reader.history("ACME")
    assert version == (6, 7) and len(signals) == 6
    insert(store, 6, usage(12, 60))  # ... which commits now, below the newest id seen,
    insert(store, 8, usage(11, 70))  # as a newer row lands
    signals, version = reader.history("ACME")
    assert version == (8, 8)
    assert sorted(keys(signals)) == sorted(keys(store.signals_for("ACME")))
    insert(store, 10, usage(9, 70))
    insert(store, 9, usage(8, 70))  # both between two reads, out of order
    signals, version = reader.history("ACME")
    assert version == (10, 10) and len(signals) == 10


def test_records_follow_new_signals_and_the_day(store: Store) -> None:
    model = load_health_model()
    store.upsert_accounts([account()])
    for back in range(40, 0, -1):
        store.add_signal(usage(back, 100 if back > 20 else 10))
    reader = FactsReader(store, model)
    record = reader.record(account(), AS_OF)
    expected = derive(account(), store.signals_for("ACME"), AS_OF, model).record()
    assert record == expected
    record["health.score"] = -1  # a caller's copy: the cache is untouched
    assert reader.record(account(), AS_OF) == expected

    store.add_signal(usage(0, 500))
    fresh = reader.record(account(), AS_OF)
    assert fresh == derive(account(), store.signals_for("ACME"), AS_OF, model).record()
    assert fresh != expected
    next_day = AS_OF + timedelta(days=1)
    assert reader.record(account(), next_day) == (
        derive(account(), store.signals_for("ACME"), next_day, model).record()
    )
    renamed = Account.model_validate({**account().model_dump(), "tier": "smb"})
    assert reader.record(renamed, next_day)["account.tier"] == "smb"


def test_the_cache_is_bounded(store: Store) -> None:
    reader = FactsReader(store, load_health_model(), max_accounts=2)
    for a in ("A", "B", "C"):
        reader.history(a)
    assert list(reader._histories) == ["B", "C"]


def test_a_stored_signal_is_the_signal_model_construct_builds(store: Store) -> None:
    sig = usage(3, 12)
    fast = stored_signal(sig.type, sig.account_id, sig.occurred_at, dict(sig.payload), "k")
    slow = Signal.model_construct(
        type=sig.type,
        account_id=sig.account_id,
        occurred_at=sig.occurred_at,
        payload=dict(sig.payload),
        idempotency_key="k",
    )
    assert fast == slow and repr(fast) == repr(slow)
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert Signal.model_validate(fast.model_dump()) == fast  # still a valid signal
    # and what the reader reads back is the signal that was stored
    store.add_signal(sig)
    [(back, _)] = [FactsReader(store, load_health_model()).history("ACME")]
    assert back == [sig]
