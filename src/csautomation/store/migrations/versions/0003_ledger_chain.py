"""ledger chain: prev_hash and hash on decision_ledger, TRUNCATE refused on PostgreSQL

Every entry gets the hash of the one before it and its own (csautomation.store.chain); the
entries already there are chained here, in id order, with the append-only triggers lifted
for the time it takes (one transaction: no one sees the ledger without them). PostgreSQL
gets a statement trigger that refuses TRUNCATE, which fires no row trigger.

Revision ID: 0003_ledger_chain
Revises: 0002_decision_ledger
Create Date: 2026-12-10
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003_ledger_chain"
down_revision = "0002_decision_ledger"
branch_labels = None
depends_on = None

# copies, as this revision wrote them (later edits of the models must not change it)
FIELDS = (
    "key",
    "kind",
    "at",
    "account_id",
    "rule_id",
    "rule_version",
    "firing_id",
    "playbook_id",
    "playbook_version",
    "workflow_id",
    "step_id",
    "connector",
    "record_id",
    "detail",
)
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS decision_ledger_no_{op_.lower()} BEFORE {op_} "
    "ON decision_ledger BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END"
    for op_ in ("UPDATE", "DELETE")
]
POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION decision_ledger_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'decision_ledger is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS decision_ledger_append_only ON decision_ledger",
    "CREATE TRIGGER decision_ledger_append_only BEFORE UPDATE OR DELETE ON decision_ledger "
    "FOR EACH ROW EXECUTE FUNCTION decision_ledger_append_only()",
]
POSTGRES_TRUNCATE = [
    "DROP TRIGGER IF EXISTS decision_ledger_no_truncate ON decision_ledger",
    "CREATE TRIGGER decision_ledger_no_truncate BEFORE TRUNCATE ON decision_ledger "
    "FOR EACH STATEMENT EXECUTE FUNCTION decision_ledger_append_only()",
]


def _hash(row: dict[str, Any], prev_hash: str) -> str:
    body = {name: row[name] for name in FIELDS}
    at: datetime = body["at"]
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    body["at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    body["prev_hash"] = prev_hash
    data = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def _lift_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS decision_ledger_append_only ON decision_ledger")
    else:
        for name in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS decision_ledger_no_{name}")


def _chain_existing() -> None:
    ledger = sa.table(
        "decision_ledger",
        sa.column("id", sa.Integer()),
        *(
            sa.column(name, sa.String())
            for name in FIELDS
            if name not in ("at", "detail", "firing_id")
        ),
        sa.column("firing_id", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("detail", sa.JSON()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(ledger).order_by(ledger.c.id)).mappings().all()
    prev, links = "", []
    for row in rows:
        values = dict(row)
        current = _hash(values, prev)
        links.append({"row_id": values["id"], "p": prev, "h": current})
        prev = current
    if links:
        conn.execute(
            ledger.update()
            .where(ledger.c.id == sa.bindparam("row_id"))
            .values(prev_hash=sa.bindparam("p"), hash=sa.bindparam("h")),
            links,
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _lift_triggers(dialect)
    for name in ("prev_hash", "hash"):
        op.add_column(
            "decision_ledger",
            sa.Column(name, sa.String(length=64), nullable=False, server_default=""),
        )
    _chain_existing()
    op.create_index("ix_decision_ledger_prev_hash", "decision_ledger", ["prev_hash"], unique=True)
    for statement in (
        POSTGRES_TRIGGERS + POSTGRES_TRUNCATE if dialect == "postgresql" else SQLITE_TRIGGERS
    ):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS decision_ledger_no_truncate ON decision_ledger")
    op.drop_index("ix_decision_ledger_prev_hash", table_name="decision_ledger")
    # SQLite drops a column by copying the table, which loses its triggers: made again below
    with op.batch_alter_table("decision_ledger") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    for statement in POSTGRES_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)
