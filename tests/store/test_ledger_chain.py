"""The ledger's hash chain on SQLite and PostgreSQL: every writer's entries are chained in
id order, concurrent writers keep one chain, a migrated ledger is chained by its migration,
and an entry edited, deleted or moved by hand (the triggers dropped first, as an attacker
with the owner's role would) is found by `verify`, named by what happened to it. The local
CRM's row and its entry commit together or not at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from csautomation.connectors.base import TaskRequest
from csautomation.connectors.local import LocalCrm
from csautomation.store import chain, ledger, migrate
from csautomation.store.deadletters import DeadLetter, record_dead_letter
from csautomation.store.escalations import record_escalation
from csautomation.store.outbox import RunStart, commit_evaluation, finish_run, index_firings
from csautomation.store.repo import Store, create_local_task, local_tasks
from csautomation.store.tables import LocalTaskRow
from csautomation.workflows.types import EscalationEvent, EscalationState
from factories import new_store, playbook_store

AT = datetime(2026, 11, 1, 9, tzinfo=UTC)
LEDGER = chain.LEDGER


def entry(i: int, **detail: Any) -> ledger.Entry:
    return ledger.Entry(
        key=f"test:{i}", kind="test", at=AT + timedelta(minutes=i), account_id="ACME", detail=detail
    )


def fill(store: Store) -> None:
    """Entries from every writer, as a day of work leaves them."""
    firing = {
        "rule_id": "usage-decline",
        "rule_version": "v1",
        "account_id": "ACME",
        "window": 7,
        "priority": "high",
        "fired_at": AT,
        "explain": {"matched": True, "facts": {"usage.logins_change_30d_pct": -70.5}},
    }
    commit_evaluation(store, [firing], [], AT)
    [fired] = ledger.entries(store)
    wf = "playbook:usage-decline:usage-recovery:ACME:7"
    run = RunStart(
        wf, None, "playbook", "usage-decline", "usage-recovery", "pb1", "ACME", "high", "q"
    )
    index_firings(store, {fired.firing_id or 0: [run]})
    ledger.append_one(
        store,
        ledger.effect("create_task", f"{wf}/a", wf, "a", "ACME", "salesforce", "00T1", True),
    )
    events = [
        EscalationEvent(at=AT, kind="opened"),
        EscalationEvent(at=AT + timedelta(hours=1), kind="acknowledged", by="mgr-01 ✓ é"),
    ]
    state = EscalationState(
        workflow_id="escalation:x",
        account_id="ACME",
        severity="high",
        opened_at=AT,
        timeline=events,
    )
    record_escalation(store, state, 1)
    record_dead_letter(
        store,
        DeadLetter(
            idempotency_key=f"{wf}/b",
            workflow_id=wf,
            step_id="b",
            action="create_task",
            connector="zendesk",
            account_id="ACME",
            payload={},
            errors=[{"message": "503"}],
            attempts=5,
            first_failure=AT,
            last_failure=AT,
        ),
    )
    with store.engine.begin() as conn:  # a batch: a key given twice, a time not in UTC
        ledger.append(
            conn,
            [
                entry(1, n=1),
                entry(2, values=[1.5, None, "x"]),
                entry(1, n=99),
                ledger.Entry(
                    key="test:tz",
                    kind="test",
                    at=datetime(2026, 11, 1, 11, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo")),
                ),
            ],
        )
    finish_run(store, wf, "recovered", AT + timedelta(days=3))


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(LEDGER).order_by(LEDGER.c.id)).mappings()]


def test_every_writers_entries_are_chained_in_id_order(store: Store) -> None:
    fill(store)
    found = rows(store.engine)
    assert len(found) == 10
    assert found[0]["prev_hash"] == chain.GENESIS
    for before, after in zip(found, found[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    assert [r["key"] for r in found].count("test:1") == 1
    result = chain.verify(store.engine)
    assert result.ok, result.to_json()
    assert (result.entries, result.head_id, result.head_hash) == (
        10,
        found[-1]["id"],
        found[-1]["hash"],
    )
    assert [(g.operation, g.ok) for g in result.guards][:2] == [("UPDATE", True), ("DELETE", True)]
    # what the ledger hands out carries the chain too (the JSON lines export)
    assert ledger.to_json(ledger.entries(store)[0])["hash"]


def test_the_database_refuses_update_delete_and_truncate(store: Store) -> None:
    fill(store)
    statements = ["UPDATE decision_ledger SET hash = ''", "DELETE FROM decision_ledger"]
    if store.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE decision_ledger")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(rows(store.engine)) == 10
    assert [g.operation for g in chain.verify(store.engine).guards] == [
        s.split()[0] for s in statements
    ]


def test_appends_from_many_threads_stay_one_chain(store: Store) -> None:
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(15):
                with store.engine.begin() as conn:
                    # another write first, as the local CRM's row comes before its entry
                    conn.execute(text("select 1"))
                    ledger.append(conn, [entry(n * 1000 + i), entry(n * 1000 + i + 500)])
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    result = chain.verify(store.engine)
    assert result.ok and result.entries == 6 * 15 * 2, result.to_json()


@pytest.fixture
def own_store(empty_db_url: str) -> Iterator[Store]:
    """A store whose schema is this test's alone (on PostgreSQL too, where the session's
    database is reused): its triggers may be dropped."""
    store = new_store(empty_db_url)
    yield store
    store.engine.dispose()


def drop_triggers(engine: Engine) -> None:
    """What someone with the database owner's role can do."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER decision_ledger_append_only ON decision_ledger"))
            conn.execute(text("DROP TRIGGER decision_ledger_no_truncate ON decision_ledger"))
        else:
            conn.execute(text("DROP TRIGGER decision_ledger_no_update"))
            conn.execute(text("DROP TRIGGER decision_ledger_no_delete"))


def ten(store: Store) -> list[int]:
    with store.engine.begin() as conn:
        ledger.append(conn, [entry(i, n=i) for i in range(10)])
    return [r["id"] for r in rows(store.engine)]


def swap(engine: Engine, a: int, b: int) -> None:
    """Two entries change places, hashes and all."""
    by_id = {r["id"]: r for r in rows(engine)}
    fields = [c for c in by_id[a] if c != "id"]
    with engine.begin() as conn:
        conn.execute(update(LEDGER).where(LEDGER.c.id == a).values(key="moving", prev_hash="x"))
        conn.execute(
            update(LEDGER).where(LEDGER.c.id == b).values({f: by_id[a][f] for f in fields})
        )
        conn.execute(
            update(LEDGER).where(LEDGER.c.id == a).values({f: by_id[b][f] for f in fields})
        )


@pytest.mark.parametrize("tampering", ["altered", "deleted", "reordered", "re-hashed"])
def test_an_entry_edited_deleted_or_moved_by_hand_is_found(
    own_store: Store, tampering: str
) -> None:
    store = own_store
    ids = ten(store)
    drop_triggers(store.engine)
    with store.engine.begin() as conn:
        if tampering == "altered":
            conn.execute(update(LEDGER).where(LEDGER.c.id == ids[3]).values(record_id="forged"))
        elif tampering == "deleted":
            conn.execute(LEDGER.delete().where(LEDGER.c.id == ids[5]))
        elif tampering == "re-hashed":  # altered, and its own hash made to match
            row = rows(store.engine)[3] | {"record_id": "forged"}
            forged = chain.entry_hash(row, row["prev_hash"])
            conn.execute(
                update(LEDGER).where(LEDGER.c.id == ids[3]).values(record_id="forged", hash=forged)
            )
    if tampering == "reordered":
        swap(store.engine, ids[2], ids[6])

    result = chain.verify(store.engine)
    assert not result.ok
    found = [(b.entry, b.problem) for b in result.breaks]
    if tampering == "altered":
        assert found == [(ids[3], "altered")]
    elif tampering == "deleted":
        assert found == [(ids[6], "missing")]
        assert f"between #{ids[4]} and #{ids[6]}" in result.breaks[0].detail
    elif tampering == "re-hashed":
        assert found == [(ids[4], "missing")]
    else:  # each side of each moved entry
        assert found == [(i, "reordered") for i in (ids[2], ids[3], ids[6], ids[7])]
        assert f"written after #{ids[5]}, now after #{ids[1]}" in result.breaks[0].detail
    assert {g.operation: g.ok for g in result.guards}["DELETE"] is False


def test_a_trigger_there_but_not_refusing_is_reported(own_store: Store) -> None:
    """Made harmless rather than dropped: disabled, or its body swapped."""
    ten(own_store)
    with own_store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("ALTER TABLE decision_ledger DISABLE TRIGGER decision_ledger_no_truncate")
            )
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION decision_ledger_append_only() RETURNS trigger "
                    "AS $$ BEGIN RETURN OLD; END; $$ LANGUAGE plpgsql"
                )
            )
        else:
            conn.execute(text("DROP TRIGGER decision_ledger_no_delete"))
            conn.execute(
                text(
                    "CREATE TRIGGER decision_ledger_no_delete BEFORE DELETE ON decision_ledger "
                    "WHEN 0 BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END"
                )
            )
            conn.execute(text("DROP TRIGGER decision_ledger_no_update"))
            conn.execute(
                text(
                    "CREATE TRIGGER decision_ledger_no_update BEFORE UPDATE OF record_id "
                    "ON decision_ledger BEGIN SELECT RAISE(ABORT, 'decision_ledger is "
                    "append-only'); END"
                )
            )
    result = chain.verify(own_store.engine)
    assert result.breaks == [] and not result.ok
    assert [g.render() for g in result.guards] == [
        f"{g.operation} ALLOWED (a trigger, but one that does not always refuse)"
        for g in result.guards
    ]


def test_a_head_noted_earlier_must_still_be_there(own_store: Store) -> None:
    store = own_store
    ids = ten(store)
    noted = chain.verify(store.engine).head_hash
    with store.engine.begin() as conn:
        ledger.append(conn, [entry(20)])
    assert chain.verify(store.engine, noted).expected_head_found is True
    drop_triggers(store.engine)
    with store.engine.begin() as conn:  # the end cut off: the chain itself is still whole
        conn.execute(LEDGER.delete().where(LEDGER.c.id >= ids[8]))
    result = chain.verify(store.engine, noted)
    assert result.breaks == [] and result.expected_head_found is False and not result.ok


def test_a_local_row_and_its_entry_commit_together(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = playbook_store(db_url)
    crm = LocalCrm(store)
    acme = store.account("ACME")
    assert acme is not None
    request = TaskRequest(
        idempotency_key="wf:call",
        workflow_id="wf",
        step_id="call",
        account=acme,
        assignee="csm-01",
        subject="Call",
        description="",
        due_at=AT,
        priority="high",
    )
    real = ledger.append

    def failing(*_args: object) -> None:
        raise OperationalError("insert into decision_ledger", {}, Exception("disk full"))

    monkeypatch.setattr(ledger, "append", failing)
    with pytest.raises(OperationalError):
        crm.create_task(request)
    assert local_tasks(store, "wf") == []  # rolled back with its entry
    monkeypatch.setattr(ledger, "append", real)

    first, again = crm.create_task(request), crm.create_task(request)
    assert (first.created, again.created) == (True, False)
    [entry_] = ledger.entries(store, ledger.Query(workflow_id="wf"))
    assert entry_.record_id == first.record_id and entry_.detail["outcome"] == "created"

    # a row written before rows and entries were written together, its entry never
    old = LocalTaskRow(
        idempotency_key="wf:old",
        workflow_id="wf",
        step_id="old",
        account_id="ACME",
        created_at=AT,
    )
    task_id, _ = create_local_task(store, old)
    crm.create_task(replace(request, idempotency_key="wf:old", step_id="old"))
    late = ledger.entries(store, ledger.Query(workflow_id="wf"))[0]
    assert (late.record_id, late.at) == (str(task_id), AT)  # at the row's own time
    assert late.detail["outcome"] == "created" and late.detail["vendor"] == "found_existing"


def test_a_ledger_made_before_the_chain_is_chained_by_its_migration(
    empty_db_url: str,
) -> None:
    store = Store(empty_db_url)
    engine = store.engine
    migrate.upgrade(engine, "0002_decision_ledger")
    columns = "key, at, kind, account_id, rule_id, rule_version, firing_id, playbook_id, "
    columns += "playbook_version, workflow_id, step_id, connector, record_id, detail"
    with engine.begin() as conn:
        for i in range(5):
            conn.execute(
                text(
                    f"insert into decision_ledger ({columns}) values (:k, :at, 'test', 'ACME', "
                    "'', '', :f, '', '', '', '', '', '', :d)"
                ),
                {
                    "k": f"old:{i}",
                    "at": AT + timedelta(seconds=i),
                    "f": i if i % 2 else None,
                    "d": json.dumps({"n": i, "s": "é", "f": 0.1 * i}),
                },
            )
    migrate.upgrade(engine)
    with engine.begin() as conn:
        ledger.append(conn, [entry(9)])
    result = chain.verify(engine)
    assert result.ok and result.entries == 6, result.to_json()

    migrate.downgrade(engine, "0002_decision_ledger")  # the triggers are kept, or made again
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("delete from decision_ledger"))
    migrate.upgrade(engine)
    assert chain.verify(engine).ok
    engine.dispose()
