"""session generations: one row per person whose sessions were ended (sign-out, revoke)

Revision ID: 0004_sessions
Revises: 0003_ledger_chain
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_sessions"
down_revision = "0003_ledger_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_generations",
        sa.Column("person_id", sa.String(length=128), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person_id"),
    )


def downgrade() -> None:
    op.drop_table("session_generations")
