"""source identities: which account each push source's user belongs to (Segment-style
`group` calls), so that the user's later events land on it

Revision ID: 0006_identities
Revises: 0005_partitions
Create Date: 2026-12-06 21:39:59.355147
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_identities"
down_revision = "0005_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_identities",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("source", "user_id"),
        if_not_exists=True,  # a fresh database made from the models before this revision
    )


def downgrade() -> None:
    op.drop_table("source_identities")
