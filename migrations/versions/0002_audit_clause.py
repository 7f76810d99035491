"""audit_events.clause: the policy clause of each decision (issue 13).

Rows written before this revision get the clause of their rule (the mapping of
``esl_guard.model.CLAUSES`` when this revision was written).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy: a migration must not change when the model does later.
_CLAUSES = {
    "max_concurrent_calls": "denial_of_service",
    "max_call_rate": "denial_of_service",
    "max_call_duration": "network_use",
    "locked": "locked",
    "lock_after": "locked",
    "manual": "locked",
}


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("clause", sa.String(32), nullable=True))
        batch.create_index(op.f("ix_audit_events_clause_time"), ["clause", "time"])
    audit = sa.table("audit_events", sa.column("rule", sa.String), sa.column("clause", sa.String))
    for rule, clause in _CLAUSES.items():
        op.execute(audit.update().where(audit.c.rule == rule).values(clause=clause))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index(op.f("ix_audit_events_clause_time"))
        batch.drop_column("clause")
