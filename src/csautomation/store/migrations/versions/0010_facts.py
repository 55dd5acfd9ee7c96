"""facts_snapshots: the pipeline's fact records of fired accounts, for the workers

Revision ID: 0010_facts
Revises: 0009_tallies
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_facts"
down_revision = "0009_tallies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "facts_snapshots",
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("signals", sa.Integer(), nullable=False),
        sa.Column("newest", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.String(length=64), nullable=False),
        sa.Column("derived", sa.JSON(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("facts_snapshots")
