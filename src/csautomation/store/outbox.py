"""The two outboxes between a stored signal and a started workflow, and the runs index.

    signals (evaluated_at empty)  --evaluate-->  rule_firings (dispatched_at empty)
    rule_firings                  --dispatch-->  Temporal workflows + playbook_runs

Each arrow is idempotent (unique firing per rule, account and window; deterministic
workflow ids) and its row is marked done only after the work it stands for is durable, so a
crash anywhere is healed by running the arrow again (invariant 1).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from csautomation.facts.model import Signal
from csautomation.store import ledger
from csautomation.store.engine import aware, table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import LocalTaskRow, PlaybookRunRow, RuleFiringRow, SignalRow


@dataclass(frozen=True)
class PendingSignal:
    row_id: int
    signal: Signal
    received_at: datetime
    # why the stored row is not a valid signal (stored by an older version or by hand):
    # then `signal` holds its values as stored, unchecked, and must not be evaluated
    problem: str = ""
    part: int = 0  # its account's partition, as stored


def pending_signals(
    store: Store, limit: int = 1000, parts: Collection[int] | None = None
) -> list[PendingSignal]:
    """Signals stored but not yet evaluated, oldest first (of the partitions `parts`; all
    when None). A row that is not a valid signal comes back with its `problem` instead of
    stopping the read."""
    t = table(SignalRow)
    q = sa_select(t).where(t.c.evaluated_at.is_(None))
    if parts is not None:
        if not parts:
            return []
        q = q.where(t.c.part.in_(sorted(parts)))
    with store.engine.connect() as conn:
        rows = conn.execute(q.order_by(t.c.id).limit(limit)).all()
    out = []
    for r in rows:
        values = {
            "type": r.type,
            "account_id": r.account_id,
            "occurred_at": aware(r.occurred_at),
            "payload": r.payload,
            "idempotency_key": r.idempotency_key,
        }
        try:
            out.append(PendingSignal(r.id, Signal(**values), aware(r.received_at), part=r.part))
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'signal'}: {e['msg']}" for e in exc.errors()
            )
            unchecked = Signal.model_construct(**values)
            out.append(PendingSignal(r.id, unchecked, aware(r.received_at), problem, r.part))
    return out


Fence = Callable[[Connection], None]


def commit_evaluation(
    store: Store,
    firings: Sequence[dict[str, Any]],
    signal_ids: Sequence[int],
    at: datetime,
    rules: Mapping[str, tuple[str, dict[str, Any]]] | None = None,
    fence: Fence | None = None,
    by: str | None = None,
) -> int:
    """One transaction for a whole evaluation pass: the firings it produced enter the
    dispatch outbox (a firing already recorded for its rule, account and window is kept
    as it is) and the decision ledger (recorded at `at`, the pass's time), the rules that
    fired are kept at their versions (`rules`: {version: (rule id, source)}), and its
    signals are marked evaluated (by the pipeline `by`). `fence` runs first in the same
    transaction and may refuse it (`partitions.LeaseLostError`): then nothing commits.
    Returns how many firings were new."""
    with store.engine.begin() as conn:
        if fence is not None:
            fence(conn)
        new = 0
        if firings:
            t = table(RuleFiringRow)
            # executemany (batched by SQLAlchemy, its statement cached), not one multi-row
            # VALUES, which is compiled anew on every pass
            stmt = upsert(conn, t).on_conflict_do_nothing()
            returning = stmt.returning(t.c.id, t.c.rule_id, t.c.account_id, t.c.window)
            added = conn.execute(returning, list(firings))
            by_key = {(f["rule_id"], f["account_id"], f["window"]): f for f in firings}
            entries = [ledger.fired(i, by_key[(r, a, w)], at) for i, r, a, w in added.all()]
            ledger.append(conn, entries)
            ledger.remember_rules(conn, rules or {})
            new = len(entries)
        signals = table(SignalRow)
        ids = list(signal_ids)
        for start in range(0, len(ids), 500):
            conn.execute(
                update(signals)
                .where(signals.c.id.in_(ids[start : start + 500]))
                .values(evaluated_at=at, evaluated_by=by)
            )
    return new


def mark_all_evaluated(store: Store, at: datetime | None = None) -> int:
    """History imported in bulk is context for facts, not news: nothing to evaluate."""
    with store.session() as s:
        result = s.exec(
            update(SignalRow)
            .where(col(SignalRow.evaluated_at).is_(None))
            .values(evaluated_at=at or datetime.now(UTC))
        )
        s.commit()
        return int(result.rowcount or 0)


def undispatched_firings(
    store: Store, limit: int = 500, parts: Collection[int] | None = None
) -> list[RuleFiringRow]:
    """The dispatch outbox (of the partitions `parts`; all when None), most urgent first
    (critical before low), then oldest first."""
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    q = select(RuleFiringRow).where(col(RuleFiringRow.dispatched_at).is_(None))
    if parts is not None:
        if not parts:
            return []
        q = q.where(col(RuleFiringRow.part).in_(sorted(parts)))
    with store.session() as s:
        rows = list(s.exec(q.order_by(col(RuleFiringRow.id)).limit(limit)).all())
    return sorted(rows, key=lambda r: (rank.get(r.priority, 9), r.id or 0))


@dataclass(frozen=True)
class RunStart:
    workflow_id: str
    run_id: str | None
    kind: str
    rule_id: str
    playbook_id: str
    playbook_version: str
    account_id: str
    priority: str
    task_queue: str


def index_firings(
    store: Store,
    batch: Mapping[int, Sequence[RunStart]],
    playbooks: Mapping[str, tuple[str, dict[str, Any]]] | None = None,
) -> None:
    """Index the runs some firings are about to start, before they start, in one
    transaction, with their entries in the decision ledger and the playbooks they run kept
    at their versions (`playbooks`: {version: (playbook id, source)}). Each write is
    order-independent: a row that `finish_run` created first keeps its status and gains
    the firing's details."""
    t = table(PlaybookRunRow)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        ledger.remember_playbooks(conn, playbooks or {})
        ledger.append(
            conn,
            (
                ledger.Entry(
                    key=f"start:{r.workflow_id}",
                    kind="workflow_started",
                    at=now,
                    account_id=r.account_id,
                    rule_id=r.rule_id,
                    firing_id=firing_id,
                    playbook_id=r.playbook_id,
                    playbook_version=r.playbook_version,
                    workflow_id=r.workflow_id,
                    detail={"kind": r.kind, "priority": r.priority, "task_queue": r.task_queue},
                )
                for firing_id, planned in batch.items()
                for r in planned
            ),
        )
        for firing_id, planned in batch.items():
            for r in planned:
                details = {
                    "kind": r.kind,
                    "firing_id": firing_id,
                    "rule_id": r.rule_id,
                    "playbook_id": r.playbook_id,
                    "playbook_version": r.playbook_version,
                    "account_id": r.account_id,
                    "priority": r.priority,
                    "task_queue": r.task_queue,
                }
                conn.execute(
                    upsert(conn, t)
                    .values(workflow_id=r.workflow_id, status="running", started_at=now, **details)
                    .on_conflict_do_update(
                        index_elements=[t.c.workflow_id], set_=details, where=t.c.rule_id == ""
                    )
                )


def mark_firings(
    store: Store, batch: Mapping[int, Sequence[RunStart]], at: datetime | None = None
) -> None:
    """Record the started runs' ids and close the firings' outbox entries, in one
    transaction."""
    when = at or datetime.now(UTC)
    run, firing = table(PlaybookRunRow), table(RuleFiringRow)
    with store.engine.begin() as conn:
        for firing_id, runs in batch.items():
            for r in runs:
                if r.run_id is not None:
                    conn.execute(
                        update(run)
                        .where(run.c.workflow_id == r.workflow_id, run.c.run_id.is_(None))
                        .values(run_id=r.run_id)
                    )
            conn.execute(
                update(firing)
                .where(firing.c.id == firing_id, firing.c.dispatched_at.is_(None))
                .values(dispatched_at=when)
            )


def finish_run(store: Store, workflow_id: str, outcome: str, at: datetime) -> None:
    """Called by the workflow's last activity, possibly before the dispatcher's own writes
    land: every write here and there touches only its own columns."""
    status = "cancelled" if outcome == "cancelled" else "completed"
    closed = {"status": status, "outcome": outcome, "closed_at": at}
    t = table(PlaybookRunRow)
    with store.engine.begin() as conn:
        ledger.append(
            conn,
            [
                ledger.Entry(
                    key=f"close:{workflow_id}",
                    kind="workflow_closed",
                    at=at,
                    account_id=_account_of(conn, workflow_id),
                    workflow_id=workflow_id,
                    detail={"outcome": outcome, "status": status},
                )
            ],
        )
        conn.execute(
            upsert(conn, t)
            .values(
                workflow_id=workflow_id,
                kind=workflow_id.split(":", 1)[0],
                started_at=datetime.now(UTC),
                **closed,
            )
            .on_conflict_do_update(index_elements=[t.c.workflow_id], set_=closed)
        )


def _account_of(conn: Connection, workflow_id: str) -> str:
    t = table(PlaybookRunRow)
    value = conn.execute(sa_select(t.c.account_id).where(t.c.workflow_id == workflow_id)).scalar()
    return str(value or "")


def runs(store: Store, status: str | None = None) -> list[PlaybookRunRow]:
    with store.session() as s:
        q = select(PlaybookRunRow)
        if status is not None:
            q = q.where(PlaybookRunRow.status == status)
        return list(s.exec(q.order_by(col(PlaybookRunRow.started_at))).all())


def run_counts(store: Store, kind: str | None = None) -> dict[str, int]:
    """Runs per status (running, completed, cancelled), of one kind (playbook, escalation)
    or all."""
    q = select(PlaybookRunRow.status, func.count()).group_by(col(PlaybookRunRow.status))
    if kind is not None:
        q = q.where(PlaybookRunRow.kind == kind)
    with store.session() as s:
        rows = s.exec(q).all()
    return {status: int(n) for status, n in rows}


def firings_per_rule(store: Store) -> dict[str, int]:
    with store.session() as s:
        rows = s.exec(
            select(RuleFiringRow.rule_id, func.count()).group_by(col(RuleFiringRow.rule_id))
        ).all()
    return {rule_id: int(n) for rule_id, n in rows}


def tasks_per_assignee(store: Store, kind: str = "task") -> dict[str, int]:
    with store.session() as s:
        rows = s.exec(
            select(LocalTaskRow.assignee, func.count())
            .where(LocalTaskRow.kind == kind)
            .group_by(col(LocalTaskRow.assignee))
        ).all()
    return {assignee: int(n) for assignee, n in rows}


def open_tasks(store: Store, limit: int = 1000) -> list[LocalTaskRow]:
    with store.session() as s:
        return list(
            s.exec(
                select(LocalTaskRow)
                .where(LocalTaskRow.kind == "task", LocalTaskRow.status == "open")
                .order_by(col(LocalTaskRow.id))
                .limit(limit)
            ).all()
        )


def complete_local_task(store: Store, task_id: int, by: str = "") -> LocalTaskRow | None:
    """Mark a local task done, and in the ledger who completed it (`by`, a person id, when
    known) and when; returns it (its workflow must then be signalled), or None."""
    with store.session() as s:
        row = s.get(LocalTaskRow, task_id)
        if row is None or row.kind != "task":
            return None
        if row.status != "done":
            row.status = "done"
            s.add(row)
            ledger.append(s.connection(), [_completed(row, by)])
            s.commit()
            s.refresh(row)
        return row


def _completed(row: LocalTaskRow, by: str) -> ledger.Entry:
    return ledger.Entry(
        key=f"completed:{row.idempotency_key}",
        kind="task_completed",
        at=datetime.now(UTC),
        account_id=row.account_id,
        workflow_id=row.workflow_id,
        step_id=row.step_id,
        connector="local",
        record_id=str(row.id),
        detail={"by": by, "assignee": row.assignee, "subject": row.subject},
    )
