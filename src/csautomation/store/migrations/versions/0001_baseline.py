"""baseline: every table of csautomation 0.1

The store's tables, the scheduler's lease and run keys, the pulls' cursors. APScheduler's
`apscheduler_jobs` is not here: APScheduler creates it (see csautomation.store.migrations).

Every table and index is created IF NOT EXISTS, so the baseline also adopts a database made
before migrations (by `SQLModel.metadata.create_all`): it creates what such a database lacks
(the tables older releases created lazily) and keeps every row of what it has.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _index(table: str, *columns: str, name: str | None = None) -> None:
    name = name or f"ix_{table}_{columns[0]}"
    op.create_index(name, table, list(columns), unique=False, if_not_exists=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    _index("accounts", "tenant")

    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        _ts("occurred_at"),
        sa.Column("payload", sa.JSON(), nullable=False),
        _ts("received_at"),
        _ts("evaluated_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        if_not_exists=True,
    )
    _index("signals", "account_id")
    _index("signals", "occurred_at")
    _index("signals", "evaluated_at", "id", name="ix_signals_pending")

    op.create_table(
        "rule_firings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("rule_version", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        _ts("fired_at"),
        sa.Column("explain", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=True),
        _ts("dispatched_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "account_id", "window"),
        if_not_exists=True,
    )
    _index("rule_firings", "rule_id")
    _index("rule_firings", "account_id")
    _index("rule_firings", "dispatched_at")

    op.create_table(
        "local_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=300), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("assignee", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("due_at", nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        if_not_exists=True,
    )
    _index("local_tasks", "workflow_id")
    _index("local_tasks", "account_id")
    _index("local_tasks", "assignee")

    op.create_table(
        "playbook_runs",
        sa.Column("workflow_id", sa.String(length=300), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("firing_id", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("playbook_version", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("task_queue", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        _ts("started_at"),
        _ts("closed_at", nullable=True),
        sa.PrimaryKeyConstraint("workflow_id"),
        if_not_exists=True,
    )
    for column in ("firing_id", "rule_id", "playbook_id", "account_id", "status"):
        _index("playbook_runs", column)

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("workflow_id", sa.String(length=300), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("first_failure"),
        _ts("last_failure"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        _ts("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        if_not_exists=True,
    )
    for column in ("workflow_id", "connector", "account_id", "status"):
        _index("dead_letters", column)

    op.create_table(
        "connector_states",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("connector"),
        if_not_exists=True,
    )

    op.create_table(
        "sync_cursors",
        sa.Column("connector", sa.String(length=64), nullable=False),
        _ts("synced_until"),
        sa.PrimaryKeyConstraint("connector"),
        if_not_exists=True,
    )

    op.create_table(
        "receipts",
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("idempotency_key"),
        if_not_exists=True,
    )

    op.create_table(
        "escalations",
        sa.Column("workflow_id", sa.String(length=300), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        _ts("opened_at"),
        _ts("ack_by", nullable=True),
        _ts("updated_at"),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("workflow_id"),
        if_not_exists=True,
    )
    for column in ("account_id", "severity", "status", "team", "holder"):
        _index("escalations", column)

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.String(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("signal_key", sa.String(length=200), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        _ts("received_at"),
        _ts("last_seen_at"),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("resolved_at", nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=False),
        sa.Column("result_key", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
        if_not_exists=True,
    )
    _index("quarantine", "source")
    _index("quarantine", "status")

    # store/scheduler_tables.py
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        _ts("expires_at"),
        _ts("acquired_at"),
        _ts("renewed_at"),
        sa.PrimaryKeyConstraint("name"),
        if_not_exists=True,
    )
    op.create_table(
        "scheduler_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=200), nullable=False),
        _ts("fire_time"),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        _ts("claimed_at"),
        _ts("finished_at", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "fire_time"),
        if_not_exists=True,
    )
    _index("scheduler_runs", "job_id")

    # store/pull_tables.py
    op.create_table(
        "pull_cursors",
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("cursor", sa.String(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("kind", "name"),
        if_not_exists=True,
    )


TABLES = [
    "accounts",
    "signals",
    "rule_firings",
    "local_tasks",
    "playbook_runs",
    "dead_letters",
    "connector_states",
    "sync_cursors",
    "receipts",
    "escalations",
    "quarantine",
    "scheduler_leases",
    "scheduler_runs",
    "pull_cursors",
]


def downgrade() -> None:
    # base is a database without csautomation: the job store APScheduler made for our jobs
    # goes too (it holds references to our job functions and nothing else)
    op.drop_table("apscheduler_jobs", if_exists=True)
    for name in reversed(TABLES):
        op.drop_table(name)  # and its indexes
