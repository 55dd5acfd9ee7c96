"""decision ledger: decision_ledger (append-only), rule_versions, playbook_versions

The ledger's append-only triggers are created here on both databases, as the models create
them on a fresh database (csautomation.store.tables, which has the same statements).

Revision ID: 0002_decision_ledger
Revises: 0001_baseline
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_decision_ledger"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


# the triggers as this revision made them (a copy: later edits of the models must not change
# what an old revision does)
APPEND_ONLY_SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS decision_ledger_no_{op_.lower()} BEFORE {op_} "
    "ON decision_ledger BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END"
    for op_ in ("UPDATE", "DELETE")
]
APPEND_ONLY_POSTGRES = [
    "CREATE OR REPLACE FUNCTION decision_ledger_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'decision_ledger is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS decision_ledger_append_only ON decision_ledger",
    "CREATE TRIGGER decision_ledger_append_only BEFORE UPDATE OR DELETE ON decision_ledger "
    "FOR EACH ROW EXECUTE FUNCTION decision_ledger_append_only()",
]


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "decision_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("rule_version", sa.String(length=32), nullable=False),
        sa.Column("firing_id", sa.Integer(), nullable=True),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("playbook_version", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=300), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    for column in ("at", "kind", "firing_id", "workflow_id"):
        op.create_index(f"ix_decision_ledger_{column}", "decision_ledger", [column])
    op.create_index("ix_decision_ledger_account_at", "decision_ledger", ["account_id", "at"])
    dialect = op.get_bind().dialect.name
    for statement in APPEND_ONLY_POSTGRES if dialect == "postgresql" else APPEND_ONLY_SQLITE:
        op.execute(statement)

    for name, owner in (("rule_versions", "rule_id"), ("playbook_versions", "playbook_id")):
        op.create_table(
            name,
            sa.Column("version", sa.String(length=32), nullable=False),
            sa.Column(owner, sa.String(length=64), nullable=False),
            sa.Column("source", sa.JSON(), nullable=False),
            _ts("first_seen"),
            sa.PrimaryKeyConstraint("version"),
        )
        op.create_index(f"ix_{name}_{owner}", name, [owner])


def downgrade() -> None:
    op.drop_table("playbook_versions")
    op.drop_table("rule_versions")
    op.drop_table("decision_ledger")  # and its triggers
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS decision_ledger_append_only()")
