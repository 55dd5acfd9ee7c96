"""The tables. Timestamps are timezone-aware UTC; payloads and explains are JSON."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DDL, JSON, Column, DateTime, Index, Integer, UniqueConstraint, event
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlmodel import Field, SQLModel

# Accounts hash into this many partitions; each running pipeline holds leases on a share of
# them (store/partitions.py). Fixed: changing it would move stored rows between partitions.
PARTITIONS = 64


def partition_of(account_id: str) -> int:
    """An account's partition: the same in every process and release (CRC-32, not
    Python's salted `hash`)."""
    return zlib.crc32(account_id.encode("utf-8")) % PARTITIONS


def _partition_default(context: DefaultExecutionContext) -> int:
    # every insert path (ORM, core, bulk, multi-values) gets it from the row's account id
    params = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return partition_of(str(params["account_id"]))


def _partition() -> Any:
    return Field(
        default=None,
        sa_column=Column(
            "part", Integer, nullable=False, default=_partition_default, server_default="0"
        ),
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(index: bool = False) -> Any:
    return Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), index=index, nullable=False),
    )


class AccountRow(SQLModel, table=True):
    __tablename__ = "accounts"
    id: str = Field(primary_key=True, max_length=128)
    tenant: str = Field(index=True, max_length=128)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts()


class SignalRow(SQLModel, table=True):
    """Every accepted signal, stored before it is acknowledged (invariant 1)."""

    __tablename__ = "signals"
    # the evaluation outbox: pending rows found without reading the whole history
    __table_args__ = (Index("ix_signals_pending", "evaluated_at", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    account_id: str = Field(index=True, max_length=128)
    type: str = Field(max_length=64)
    occurred_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = _ts()
    evaluated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    part: int | None = _partition()
    # the pipeline (its member id) whose evaluation of this signal committed
    evaluated_by: str | None = Field(default=None, max_length=64)


class RuleFiringRow(SQLModel, table=True):
    """A rule that fired for an account in a cooldown window, with its explain."""

    __tablename__ = "rule_firings"
    __table_args__ = (UniqueConstraint("rule_id", "account_id", "window"),)
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=64, index=True)
    rule_version: str = Field(max_length=32)
    account_id: str = Field(max_length=128, index=True)
    window: int
    priority: str = Field(max_length=16)
    fired_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    explain: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # the rule's actions as they were when it fired: the dispatch outbox needs nothing else
    actions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    dispatched_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )
    part: int | None = _partition()


class LocalTaskRow(SQLModel, table=True):
    """Tasks and notifications of the built-in `local` connector (the embedded CRM)."""

    __tablename__ = "local_tasks"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=300, unique=True)
    kind: str = Field(default="task", max_length=16)  # task, notification, account_update
    workflow_id: str = Field(max_length=300, index=True)
    step_id: str = Field(max_length=64)
    account_id: str = Field(max_length=128, index=True)
    assignee: str = Field(default="", max_length=128, index=True)
    subject: str = ""
    description: str = ""
    priority: str = Field(default="medium", max_length=16)
    status: str = Field(default="open", max_length=16)
    due_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = _ts()


class PlaybookRunRow(SQLModel, table=True):
    """The index of workflows started from rule firings: one row per deterministic id."""

    __tablename__ = "playbook_runs"
    workflow_id: str = Field(primary_key=True, max_length=300)
    run_id: str | None = Field(default=None, max_length=64)
    kind: str = Field(default="playbook", max_length=16)  # playbook or escalation
    firing_id: int | None = Field(default=None, index=True)
    rule_id: str = Field(default="", max_length=64, index=True)
    playbook_id: str = Field(default="", max_length=64, index=True)
    playbook_version: str = Field(default="", max_length=32)
    account_id: str = Field(default="", max_length=128, index=True)
    priority: str = Field(default="", max_length=16)
    task_queue: str = Field(default="", max_length=64)
    status: str = Field(default="running", max_length=16, index=True)
    outcome: str = Field(default="", max_length=64)
    started_at: datetime = _ts()
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class DeadLetterRow(SQLModel, table=True):
    """An action that exhausted its retries or failed for good, with everything needed to
    re-drive it through the same idempotency key (invariant 5). Payloads hold ids and
    rendered values, never secrets."""

    __tablename__ = "dead_letters"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=300, unique=True)  # workflow id + step id
    workflow_id: str = Field(max_length=300, index=True)
    step_id: str = Field(max_length=64)
    action: str = Field(max_length=32)  # the activity: create_task, notify, update_account
    connector: str = Field(default="", max_length=64, index=True)
    account_id: str = Field(default="", max_length=128, index=True)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    attempts: int = 0
    first_failure: datetime = _ts()
    last_failure: datetime = _ts()
    status: str = Field(default="open", max_length=16, index=True)  # open, redriven, discarded
    record_id: str = Field(default="", max_length=128)  # the vendor's, once re-driven
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # automatic re-drive of a transient failure: how many were tried, and when the next is
    # due (None: a person decides, the failure is permanent or too old to retry)
    redrives: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    next_redrive_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )


class ActionAttemptRow(SQLModel, table=True):
    """An action's attempts that reached the vendor, across Temporal's attempts: waits at
    our own breaker or rate limit are counted apart and spend none of `retry.attempts`."""

    __tablename__ = "action_attempts"
    idempotency_key: str = Field(primary_key=True, max_length=300)
    sent: int = 0  # attempts whose failure came from the vendor
    waits: int = 0  # attempts that failed at our own breaker or rate limit
    last_attempt: int = 0  # Temporal's attempt number last counted (each counts once)
    updated_at: datetime = _ts()


class ConnectorStateRow(SQLModel, table=True):
    """The latest breaker state each worker process reported, per connector."""

    __tablename__ = "connector_states"
    connector: str = Field(primary_key=True, max_length=64)
    state: str = Field(default="closed", max_length=16)
    failures: int = 0
    last_error: str = ""
    updated_at: datetime = _ts()


class SyncCursorRow(SQLModel, table=True):
    """Completion sync: up to when each connector's completed tasks have been read."""

    __tablename__ = "sync_cursors"
    connector: str = Field(primary_key=True, max_length=64)
    synced_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceiptRow(SQLModel, table=True):
    """What a vendor answered for an action, by idempotency key: when an attempt's vendor
    call succeeded but its completion never reached Temporal (a worker crash, a timeout),
    the retry finds the receipt here and calls nobody."""

    __tablename__ = "receipts"
    idempotency_key: str = Field(primary_key=True, max_length=300)
    connector: str = Field(max_length=64)
    record_id: str = Field(max_length=128)
    created_at: datetime = _ts()


class EscalationRow(SQLModel, table=True):
    """Each escalation as its workflow last recorded it: what the manager's page lists and
    filters without asking Temporal about every one. `state` is the whole EscalationState
    (with its timeline); the columns are copies for filtering and sorting."""

    __tablename__ = "escalations"
    workflow_id: str = Field(primary_key=True, max_length=300)
    account_id: str = Field(max_length=128, index=True)
    severity: str = Field(max_length=16, index=True)
    status: str = Field(max_length=16, index=True)
    level: int = 0
    team: str = Field(default="", max_length=64, index=True)
    holder: str = Field(default="", max_length=128, index=True)
    rule_id: str = Field(default="", max_length=64)
    opened_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ack_by: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    updated_at: datetime = _ts()
    seq: int = 0  # the workflow's count of recorded changes: an older write never wins
    state: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class QuarantineRow(SQLModel, table=True):
    """A signal we could not accept, kept with why so it can be fixed and re-processed:
    a payload that failed validation (`raw` as it came), or a stored signal held back from
    evaluation because its account is unknown (`signal_key`). The same bad item delivered
    again is one row whose `times` grows."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, unique=True)  # SHA-256 of source + raw item
    source: str = Field(default="", max_length=64, index=True)
    raw: str = ""  # the item as received (JSON text), cut at RAW_LIMIT
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    signal_key: str = Field(default="", max_length=200)
    times: int = 1
    received_at: datetime = _ts()
    last_seen_at: datetime = _ts()
    status: str = Field(default="open", max_length=16, index=True)  # open, reprocessed, discarded
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    resolved_by: str = Field(default="", max_length=128)
    result_key: str = Field(default="", max_length=200)  # the signal it became


class DecisionRow(SQLModel, table=True):
    """The decision ledger: one row per rule firing, workflow start, side effect, escalation
    change, dead letter and run outcome, kept beyond Temporal's history retention. Rows are
    only ever added (`key` makes a retried write a no-op), each chained to the one before
    it by hash (store/chain.py), and triggers refuse UPDATE and DELETE on both databases and
    TRUNCATE on PostgreSQL (see store/ledger.py)."""

    __tablename__ = "decision_ledger"
    __table_args__ = (
        Index("ix_decision_ledger_account_at", "account_id", "at"),
        # one entry after each: the chain cannot fork
        Index("ix_decision_ledger_prev_hash", "prev_hash", unique=True),
    )
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    kind: str = Field(max_length=32, index=True)
    account_id: str = Field(default="", max_length=128)
    rule_id: str = Field(default="", max_length=64)
    rule_version: str = Field(default="", max_length=32)
    firing_id: int | None = Field(default=None, index=True)
    playbook_id: str = Field(default="", max_length=64)
    playbook_version: str = Field(default="", max_length=32)
    workflow_id: str = Field(default="", max_length=300, index=True)
    step_id: str = Field(default="", max_length=64)
    connector: str = Field(default="", max_length=64)
    record_id: str = Field(default="", max_length=128)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(default="", max_length=64)


# The ledger is append-only, enforced by the database itself: these triggers are created with
# the table (and by its migration)
APPEND_ONLY_SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS decision_ledger_no_{op.lower()} BEFORE {op} "
    "ON decision_ledger BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
APPEND_ONLY_POSTGRES = [
    "CREATE OR REPLACE FUNCTION decision_ledger_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'decision_ledger is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS decision_ledger_append_only ON decision_ledger",
    "CREATE TRIGGER decision_ledger_append_only BEFORE UPDATE OR DELETE ON decision_ledger "
    "FOR EACH ROW EXECUTE FUNCTION decision_ledger_append_only()",
    # TRUNCATE fires no row trigger: a statement trigger of its own
    "DROP TRIGGER IF EXISTS decision_ledger_no_truncate ON decision_ledger",
    "CREATE TRIGGER decision_ledger_no_truncate BEFORE TRUNCATE ON decision_ledger "
    "FOR EACH STATEMENT EXECUTE FUNCTION decision_ledger_append_only()",
]
for _dialect, _statements in (("sqlite", APPEND_ONLY_SQLITE), ("postgresql", APPEND_ONLY_POSTGRES)):
    for _sql in _statements:
        _ddl = DDL(_sql)  # type: ignore[no-untyped-call]
        event.listen(DecisionRow.__table__, "after_create", _ddl.execute_if(dialect=_dialect))  # type: ignore[attr-defined]


class RuleVersionRow(SQLModel, table=True):
    """Each rule as it was at a version that fired: `csauto rules replay` re-evaluates a
    firing's recorded facts against it, whatever the rule files say today."""

    __tablename__ = "rule_versions"
    version: str = Field(primary_key=True, max_length=32)
    rule_id: str = Field(max_length=64, index=True)
    source: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    first_seen: datetime = _ts()


class PlaybookVersionRow(SQLModel, table=True):
    """Each playbook as it was at a version some run started with."""

    __tablename__ = "playbook_versions"
    version: str = Field(primary_key=True, max_length=32)
    playbook_id: str = Field(max_length=64, index=True)
    source: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    first_seen: datetime = _ts()


class PipelinePartitionRow(SQLModel, table=True):
    """A partition's lease: held by one pipeline at a time, renewed by it, taken over when
    it expires. A pipeline commits an evaluation only while it still holds the partitions
    of every signal in it (checked under a row lock in the same transaction)."""

    __tablename__ = "pipeline_partitions"
    part: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    holder: str | None = Field(default=None, max_length=64)
    epoch: int = 0  # grows on every change of holder
    expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class PipelineMemberRow(SQLModel, table=True):
    """A running pipeline, seen at its last renewal: the live ones share the partitions."""

    __tablename__ = "pipeline_members"
    id: str = Field(primary_key=True, max_length=64)
    started_at: datetime = _ts()
    seen_at: datetime = _ts()
