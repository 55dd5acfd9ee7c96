"""partitions: each signal's and firing's account partition, who evaluated a signal, and
the pipelines' partition leases and members

Revision ID: 0005_partitions
Revises: 0004_sessions
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from csautomation.store.tables import partition_of

revision = "0005_partitions"
down_revision = "0004_sessions"
branch_labels = None
depends_on = None

TABLES = ("signals", "rule_firings")


def _columns(name: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(name)}


def upgrade() -> None:
    # a column the table has already is kept: the baseline adopts tables made by the
    # models of the release that made them, which may be this one
    for name in TABLES:
        if "part" not in _columns(name):
            with op.batch_alter_table(name) as batch:
                batch.add_column(
                    sa.Column("part", sa.Integer(), server_default="0", nullable=False)
                )
    if "evaluated_by" not in _columns("signals"):
        with op.batch_alter_table("signals") as batch:
            batch.add_column(sa.Column("evaluated_by", sa.String(length=64), nullable=True))
    # the rows stored before: their partition from their account id, one UPDATE per account
    bind = op.get_bind()
    for name in TABLES:
        t = sa.table(name, sa.column("account_id", sa.String), sa.column("part", sa.Integer))
        accounts = bind.execute(sa.select(t.c.account_id).distinct()).scalars().all()
        rows = [{"a": a, "p": partition_of(a)} for a in accounts]
        if rows:
            bind.execute(
                sa.update(t)
                .where(t.c.account_id == sa.bindparam("a"))
                .values(part=sa.bindparam("p")),
                rows,
            )
    op.create_table(
        "pipeline_partitions",
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("part"),
    )
    op.create_table(
        "pipeline_members",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("pipeline_members")
    op.drop_table("pipeline_partitions")
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("evaluated_by")
    for name in reversed(TABLES):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("part")
