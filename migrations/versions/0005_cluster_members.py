"""High availability (issue 14): the instances of a group, as `esl-guard status` lists them.

Decision ids are already unique (audit_events.event_id, locks.lock_id); since this release
they are deterministic, so two instances acting on the same call store one row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_members",
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("started", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_cluster_members")),
    )
    with op.batch_alter_table("cluster_members") as batch:
        batch.create_index(batch.f("ix_cluster_members_last_seen"), ["last_seen"])


def downgrade() -> None:
    with op.batch_alter_table("cluster_members") as batch:
        batch.drop_index(batch.f("ix_cluster_members_last_seen"))
    op.drop_table("cluster_members")
