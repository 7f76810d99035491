"""Destination classes and minute budgets (issue 12).

- audit_events.destination, audit_events.destination_class: the dialled number and the
  destination class of the call each decision is about (NULL: no call, or in no class);
- call_minutes: the answered interval of each ended call under a ``max_minutes`` budget, so
  the budget's sliding window survives a restart.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("destination", sa.String(64), nullable=True))
        batch.add_column(sa.Column("destination_class", sa.String(64), nullable=True))
    op.create_table(
        "call_minutes",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("destination_class", sa.String(64), nullable=True),
        sa.Column("answered", sa.Double(), nullable=False),
        sa.Column("ended", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_minutes")),
        sa.UniqueConstraint("event_id", name=op.f("uq_call_minutes_event_id")),
    )
    with op.batch_alter_table("call_minutes") as batch:
        batch.create_index(batch.f("ix_call_minutes_ended"), ["ended"])


def downgrade() -> None:
    with op.batch_alter_table("call_minutes") as batch:
        batch.drop_index(batch.f("ix_call_minutes_ended"))
    op.drop_table("call_minutes")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("destination_class")
        batch.drop_column("destination")
