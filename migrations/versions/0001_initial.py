"""Initial schema: audit_events, locks, daemon_status.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(32), nullable=True),
        sa.Column("uuid", sa.String(64), nullable=True),
        sa.Column("node", sa.String(64), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("limit_value", sa.String(64), nullable=True),
        sa.Column("observed", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_events_event_id")),
    )
    op.create_index(
        op.f("ix_audit_events_account_time"), "audit_events", ["account", "time"]
    )
    op.create_index(op.f("ix_audit_events_time"), "audit_events", ["time"])
    op.create_index(op.f("ix_audit_events_kind_time"), "audit_events", ["kind", "time"])

    op.create_table(
        "locks",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lock_id", sa.String(36), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("until", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("released_at", sa.Double(), nullable=True),
        sa.Column("released_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locks")),
        sa.UniqueConstraint("lock_id", name=op.f("uq_locks_lock_id")),
    )
    op.create_index(
        op.f("ix_locks_account_released_at"), "locks", ["account", "released_at"]
    )
    op.create_index(op.f("ix_locks_since"), "locks", ["since"])

    op.create_table(
        "daemon_status",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daemon_status")),
    )


def downgrade() -> None:
    op.drop_table("daemon_status")
    op.drop_index(op.f("ix_locks_since"), table_name="locks")
    op.drop_index(op.f("ix_locks_account_released_at"), table_name="locks")
    op.drop_table("locks")
    op.drop_index(op.f("ix_audit_events_kind_time"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_time"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_account_time"), table_name="audit_events")
    op.drop_table("audit_events")
