"""tallies: signals each push source brought in

Revision ID: 0009_tallies
Revises: 0008_usage_tallies
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_tallies"
down_revision = "0008_usage_tallies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_tallies",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )


def downgrade() -> None:
    op.drop_table("source_tallies")
