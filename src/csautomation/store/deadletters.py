"""The dead-letter store: failed actions, kept until they are re-driven or discarded.

A dead letter whose failure was transient (the vendor unavailable, rate limiting, a lost
answer, our own open breaker: `transient`) is due for an automatic re-drive
(`next_redrive_at`, scheduling/redrive.py); a permanent refusal (validation, auth, not
found, an unknown connector or account) waits for a person (`next_redrive_at` None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from csautomation.store import ledger
from csautomation.store.engine import table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import ConnectorStateRow, DeadLetterRow


@dataclass(frozen=True)
class DeadLetter:
    idempotency_key: str
    workflow_id: str
    step_id: str
    action: str
    connector: str
    account_id: str
    payload: dict[str, Any]
    errors: list[dict[str, Any]]
    attempts: int
    first_failure: datetime
    last_failure: datetime


# the failures that a later try may get past, as the error chain names them (the
# ApplicationError types the activities raise, and Temporal's own timeout)
TRANSIENT = frozenset(
    {"ConnectorUnavailableError", "ConnectorRateLimitedError", "CircuitOpenError", "TimeoutError"}
)
PERMANENT = frozenset(
    {
        "ConnectorValidationError",
        "ConnectorNotFoundError",
        "ConnectorAuthError",
        "ConnectorError",
        "UnknownConnector",
        "UnknownAccount",
        "TemplateError",
    }
)
# the first automatic re-drive, when the entry is recorded; the scheduler's configuration
# (schedules.yaml `redrive:`) sets the later ones
FIRST_REDRIVE = timedelta(minutes=1)


def transient(errors: list[dict[str, Any]]) -> bool:
    """Whether the latest failure that says what went wrong was transient: a retry may
    succeed, and no person needs to look."""
    kinds = [e.get("type") for e in errors if e.get("type") in TRANSIENT | PERMANENT]
    return bool(kinds) and kinds[-1] in TRANSIENT


def record_dead_letter(store: Store, dl: DeadLetter) -> int:
    """One open entry per action (workflow id + step): recording it again, as a retried
    workflow task does, updates it instead of adding a second. A transient failure is due
    for an automatic re-drive after FIRST_REDRIVE."""
    t = table(DeadLetterRow)
    due = dl.last_failure + FIRST_REDRIVE if transient(dl.errors) else None
    values = {**dl.__dict__, "status": "open", "next_redrive_at": due}
    with store.engine.begin() as conn:
        conn.execute(
            upsert(conn, t)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[t.c.idempotency_key],
                set_={
                    "errors": dl.errors,
                    "attempts": dl.attempts,
                    "last_failure": dl.last_failure,
                    "payload": dl.payload,
                    "status": "open",
                    "next_redrive_at": due,
                },
            )
        )
        row_id = conn.execute(
            select(t.c.id).where(t.c.idempotency_key == dl.idempotency_key)
        ).scalar_one()
        ledger.append(
            conn,
            [
                ledger.Entry(
                    key=f"dead_letter:{dl.idempotency_key}:{dl.last_failure.isoformat()}",
                    kind="dead_lettered",
                    at=dl.last_failure,
                    account_id=dl.account_id,
                    workflow_id=dl.workflow_id,
                    step_id=dl.step_id,
                    connector=dl.connector,
                    detail={
                        "dead_letter_id": int(row_id),
                        "outcome": ledger.FAILED,  # the side effect's: it failed for good
                        "action": dl.action,
                        "attempts": dl.attempts,
                        "errors": dl.errors[-1:],
                    },
                )
            ],
        )
    return int(row_id)


def dead_letters(store: Store, status: str | None = "open") -> list[DeadLetterRow]:
    t = table(DeadLetterRow)
    q = select(t).order_by(t.c.id)
    if status is not None:
        q = q.where(t.c.status == status)
    with store.engine.connect() as conn:
        return [DeadLetterRow.model_validate(dict(r._mapping)) for r in conn.execute(q)]


def dead_letter_counts(store: Store) -> dict[tuple[str, str], int]:
    """Dead letters per (connector, status): open, redriven, discarded."""
    t = table(DeadLetterRow)
    q = select(t.c.connector, t.c.status, func.count()).group_by(t.c.connector, t.c.status)
    with store.engine.connect() as conn:
        return {(c, s): int(n) for c, s, n in conn.execute(q)}


def dead_letter(store: Store, row_id: int) -> DeadLetterRow | None:
    with store.session() as s:
        return s.get(DeadLetterRow, row_id)


def resolve(store: Store, row_id: int, status: str, record_id: str = "") -> bool:
    """Close an open entry as redriven (with the vendor's record id) or discarded."""
    t = table(DeadLetterRow)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        done = conn.execute(
            update(t)
            .where(t.c.id == row_id, t.c.status == "open")
            .values(status=status, record_id=record_id, resolved_at=now, next_redrive_at=None)
        )
        if done.rowcount:
            row = conn.execute(select(t).where(t.c.id == row_id)).one()
            ledger.append(
                conn,
                [
                    ledger.Entry(
                        key=f"dead_letter:{row.idempotency_key}:{status}:{now.isoformat()}",
                        kind=status,  # redriven or discarded
                        at=now,
                        account_id=row.account_id,
                        workflow_id=row.workflow_id,
                        step_id=row.step_id,
                        connector=row.connector,
                        record_id=record_id,
                        detail={"dead_letter_id": row_id, "action": row.action},
                    )
                ],
            )
    return bool(done.rowcount)


def due_dead_letters(store: Store, now: datetime) -> list[DeadLetterRow]:
    """Open entries whose automatic re-drive is due at `now`, oldest due first."""
    t = table(DeadLetterRow)
    q = (
        select(t)
        .where(t.c.status == "open", t.c.next_redrive_at <= now)
        .order_by(t.c.next_redrive_at, t.c.id)
    )
    with store.engine.connect() as conn:
        return [DeadLetterRow.model_validate(dict(r._mapping)) for r in conn.execute(q)]


def redrive_failed(
    store: Store,
    row_id: int,
    error: dict[str, Any],
    at: datetime,
    next_at: datetime | None,
) -> None:
    """An open entry's re-drive failed with `error` (the chain grows by it): one more
    attempt and re-drive, and the next due time (None: now a person decides)."""
    t = table(DeadLetterRow)
    with store.engine.begin() as conn:
        row = conn.execute(select(t).where(t.c.id == row_id, t.c.status == "open")).first()
        if row is None:  # resolved meanwhile (by a person, or another re-drive)
            return
        conn.execute(
            update(t)
            .where(t.c.id == row_id)
            .values(
                errors=[*row.errors, error][-20:],  # the latest twenty
                attempts=row.attempts + 1,
                redrives=row.redrives + 1,
                last_failure=at,
                next_redrive_at=next_at,
            )
        )


def postpone(store: Store, row_id: int, next_at: datetime | None) -> None:
    """Move an open entry's next automatic re-drive (None: stop, a person decides)."""
    t = table(DeadLetterRow)
    with store.engine.begin() as conn:
        conn.execute(
            update(t).where(t.c.id == row_id, t.c.status == "open").values(next_redrive_at=next_at)
        )


def save_breaker(store: Store, connector: str, state: str, failures: int, error: str) -> None:
    """Keep a breaker's latest state for `csauto connectors status` (any process)."""
    t = table(ConnectorStateRow)
    values = {
        "state": state,
        "failures": failures,
        "last_error": error,
        "updated_at": datetime.now(UTC),
    }
    with store.engine.begin() as conn:
        conn.execute(
            upsert(conn, t)
            .values(connector=connector, **values)
            .on_conflict_do_update(index_elements=[t.c.connector], set_=values)
        )


def breaker_states(store: Store) -> dict[str, ConnectorStateRow]:
    t = table(ConnectorStateRow)
    with store.engine.connect() as conn:
        rows = [ConnectorStateRow.model_validate(dict(r._mapping)) for r in conn.execute(select(t))]
    return {r.connector: r for r in rows}
