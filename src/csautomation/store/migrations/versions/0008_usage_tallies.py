"""usage tallies: what the product-analytics pulls counted per export window

Revision ID: 0008_usage_tallies
Revises: 0007_auto_redrive
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_usage_tallies"
down_revision = "0007_auto_redrive"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # store/usage_tallies.py
    op.create_table(
        "usage_tallies",
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("window", sa.String(length=64), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("users", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "day", "account_id", "window"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_usage_tallies_window",
        "usage_tallies",
        ["source", "window"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_usage_tallies_window", table_name="usage_tallies")
    op.drop_table("usage_tallies")
