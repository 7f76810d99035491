"""High availability (issue 14): several `esl-guard run` on one PostgreSQL database form a
group with exactly one active instance; the others are hot standby.

``roles`` is the pure part (role transitions from observations and clocks), ``ids`` the
deterministic decision ids; ``elector`` (PostgreSQL session advisory lock) and ``single``
(SQLite: one process per database) are the adapters.
"""
from __future__ import annotations

from esl_guard.cluster.ids import decision_id, lock_id_for
from esl_guard.cluster.roles import Change, Leadership, Role, Seen, check_every, may_take, observe

__all__ = ["Change", "Leadership", "Role", "Seen", "check_every", "decision_id", "lock_id_for",
           "may_take", "observe"]
