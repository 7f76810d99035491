"""Unlock requests: `esl-guard unlock` also ends a lock the daemon has not written yet.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "unlocks",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unlocks")),
    )
    with op.batch_alter_table("unlocks") as batch:
        batch.create_index(batch.f("ix_unlocks_account_at"), ["account", "at"])
        batch.create_index(batch.f("ix_unlocks_at"), ["at"])


def downgrade() -> None:
    with op.batch_alter_table("unlocks") as batch:
        batch.drop_index(batch.f("ix_unlocks_at"))
        batch.drop_index(batch.f("ix_unlocks_account_at"))
    op.drop_table("unlocks")
