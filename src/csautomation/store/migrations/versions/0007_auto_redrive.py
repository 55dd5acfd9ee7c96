"""auto re-drive: each action's attempts that reached the vendor (waits at our own breaker
or rate limit apart), and each dead letter's automatic re-drives and next due time

Revision ID: 0007_auto_redrive
Revises: 0006_identities
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_auto_redrive"
down_revision = "0006_identities"
branch_labels = None
depends_on = None


def _columns(name: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(name)}


def upgrade() -> None:
    # what the table has already is kept: the baseline adopts tables made by the models of
    # the release that made them, which may be this one. Dead letters recorded before wait
    # for a person, as they did (no next re-drive time).
    if not sa.inspect(op.get_bind()).has_table("action_attempts"):
        op.create_table(
            "action_attempts",
            sa.Column("idempotency_key", sa.String(length=300), nullable=False),
            sa.Column("sent", sa.Integer(), nullable=False),
            sa.Column("waits", sa.Integer(), nullable=False),
            sa.Column("last_attempt", sa.Integer(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("idempotency_key"),
        )
    if "redrives" not in _columns("dead_letters"):
        with op.batch_alter_table("dead_letters") as batch:
            batch.add_column(
                sa.Column("redrives", sa.Integer(), server_default="0", nullable=False)
            )
            batch.add_column(
                sa.Column("next_redrive_at", sa.DateTime(timezone=True), nullable=True)
            )
            batch.create_index("ix_dead_letters_next_redrive_at", ["next_redrive_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_index("ix_dead_letters_next_redrive_at")
        batch.drop_column("next_redrive_at")
        batch.drop_column("redrives")
    op.drop_table("action_attempts")
