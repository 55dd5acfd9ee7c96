"""Partition leases (store/partitions.py): live pipelines share the partitions, a stopped
one's are taken over after its lease, and a pipeline that lost a partition commits nothing
for it. Runs on SQLite and, with `--db postgres`, on PostgreSQL, where the row locks are
real (the SKIP LOCKED case runs only there)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from csautomation.facts.model import Signal
from csautomation.store.engine import table
from csautomation.store.outbox import commit_evaluation, pending_signals
from csautomation.store.partitions import PARTITIONS, LeaseLostError, Partitions, share
from csautomation.store.repo import Store
from csautomation.store.tables import PipelinePartitionRow, RuleFiringRow, partition_of

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
TTL = timedelta(seconds=10)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def member(store: Store, name: str, clock: Clock, single: bool = False) -> Partitions:
    return Partitions(store.engine, member=name, ttl=TTL, clock=clock, single=single)


def test_share_is_round_robin_in_start_order() -> None:
    assert share(["a", "b"], "a", single=False) == frozenset(range(0, PARTITIONS, 2))
    assert share(["a", "b", "c"], "c", single=False) == frozenset(range(2, PARTITIONS, 3))
    assert share(["a", "b"], "a", single=True) == frozenset(range(PARTITIONS))
    assert share(["a", "b"], "b", single=True) == frozenset()
    assert share(["a"], "z", single=False) == frozenset()
    assert set().union(*(share(["a", "b", "c"], m, False) for m in "abc")) == set(range(PARTITIONS))


def test_members_share_every_partition_and_a_joiner_gets_its_part(store: Store) -> None:
    clock = Clock()
    a, b = member(store, "a", clock), member(store, "b", clock)
    clock.now += timedelta(microseconds=1)  # b starts after a
    assert len(a.refresh()) == PARTITIONS  # alone: everything
    b.refresh()
    assert b.held == frozenset()  # a still holds them all, unexpired
    a.refresh(force=True)  # a sees b and hands over b's share
    b.refresh(force=True)
    assert a.held.isdisjoint(b.held) and a.held | b.held == set(range(PARTITIONS))
    assert len(a.held) == len(b.held) == PARTITIONS // 2

    c = member(store, "c", clock)
    for m in (c, a, b) * 2:  # a share moves in two renewals: released, then taken
        m.refresh(force=True)
    sizes = sorted(len(m.held) for m in (a, b, c))
    assert sizes == [21, 21, 22]
    assert len(a.held | b.held | c.held) == PARTITIONS


def test_a_stopped_members_partitions_are_taken_after_its_lease(store: Store) -> None:
    clock = Clock()
    a, b = member(store, "a", clock), member(store, "b", clock)
    for m in (a, b, a, b):
        m.refresh(force=True)
    lost = b.held
    assert lost and a.held.isdisjoint(lost)

    clock.now += TTL / 2  # b stopped renewing; its lease has not run out yet
    a.refresh(force=True)
    assert a.held.isdisjoint(lost)
    clock.now += TTL  # now it has: a takes everything over
    assert a.refresh(force=True) == frozenset(range(PARTITIONS))
    t = table(PipelinePartitionRow)
    with store.engine.connect() as conn:
        epochs = dict(conn.execute(select(t.c.part, t.c.epoch)).all())
    assert all(epochs[p] == 3 for p in lost)  # a, then b, then a again
    assert all(epochs[p] == 1 for p in set(range(PARTITIONS)) - lost)


def test_a_pass_whose_partition_moved_commits_nothing(store: Store) -> None:
    clock = Clock()
    a, b = member(store, "a", clock), member(store, "b", clock)
    a.refresh()
    store.add_signal(_signal("ACME"))
    [pending] = pending_signals(store, parts=a.held)
    assert pending.part == partition_of("ACME")

    clock.now += TTL * 2  # a froze past its lease; b, alone and live, takes everything
    assert pending.part in b.refresh()
    firing = _firing("ACME")
    with pytest.raises(LeaseLostError, match=f"partition\\(s\\) {pending.part} moved"):
        commit_evaluation(
            store,
            [firing],
            [pending.row_id],
            clock.now,
            fence=lambda conn: a.fence(conn, {pending.part}),
            by=a.member,
        )
    assert a.held == frozenset()  # it knows it lost them
    assert [p.row_id for p in pending_signals(store, parts=b.held)] == [pending.row_id]
    with store.engine.connect() as conn:
        assert conn.execute(select(table(RuleFiringRow).c.id)).all() == []

    commit_evaluation(
        store,
        [firing],
        [pending.row_id],
        clock.now,
        fence=lambda conn: b.fence(conn, {pending.part}),
        by=b.member,
    )
    assert pending_signals(store) == []
    with store.engine.connect() as conn:
        t = table(RuleFiringRow)
        assert conn.execute(select(t.c.account_id, t.c.part)).all() == [
            ("ACME", partition_of("ACME"))
        ]


def test_on_sqlite_one_member_holds_everything_and_a_stand_in_takes_over(store: Store) -> None:
    clock = Clock()
    a = member(store, "a", clock, single=True)
    clock.now += timedelta(microseconds=1)
    b = member(store, "b", clock, single=True)
    assert len(a.refresh()) == PARTITIONS
    assert b.refresh() == frozenset()
    a.release()  # a clean stop hands over at once
    assert b.refresh(force=True) == frozenset(range(PARTITIONS))


def test_a_claim_skips_a_lease_locked_by_a_commit_in_flight(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    clock = Clock()
    a, b = member(store, "a", clock), member(store, "b", clock)
    a.refresh()
    part = partition_of("ACME")
    clock.now += TTL * 2  # a's lease ran out, but its commit is under way
    locked, release = threading.Event(), threading.Event()

    def commit_in_flight() -> None:
        with store.engine.begin() as conn:
            a.fence(conn, {part})  # a renewed nothing, but still holds the row: it passes
            locked.set()
            release.wait(10)

    thread = threading.Thread(target=commit_in_flight)
    thread.start()
    try:
        assert locked.wait(10)
        held = b.refresh()  # does not wait for a's commit: that lease is skipped
        assert part not in held and len(held) == PARTITIONS - 1
    finally:
        release.set()
        thread.join(10)
    assert part in b.refresh(force=True)  # once a's commit is over, b takes it


def _signal(account: str) -> Signal:
    return Signal(
        type="usage_daily",
        account_id=account,
        occurred_at=T0,
        payload={"logins": 3, "active_users": 2},
        idempotency_key=f"k-{account}",
    )


def _firing(account: str) -> dict[str, object]:
    return {
        "rule_id": "usage-drop",
        "rule_version": "v1",
        "account_id": account,
        "window": 1,
        "priority": "high",
        "fired_at": T0,
        "explain": {},
        "actions": [],
    }
