"""Deterministic ids of decisions: two instances that decide the same thing (the same call
hung up for the same rule, the same lock) give it the same id, so the audit trail and the
locks table (unique ``event_id`` / ``lock_id``, inserts that ignore a duplicate) store it once.

Pure: no I/O.  The ids are UUIDs (version 5) of a key naming the decision.
"""
from __future__ import annotations

import uuid

from esl_guard.model import Action, ActionKind

#: The namespace of esl-guard's decision ids (a fixed, random UUID: never change it).
NAMESPACE = uuid.UUID("0b7d3c5e-8f5e-4c51-9a57-6f2a1c1d8e14")


def _uuid5(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, key))


def lock_id_for(account: str, trigger: str) -> str:
    """The id of the lock of ``account`` that the violation ``trigger`` (node/call/rule)
    took: every instance following the same calls takes the same lock."""
    return _uuid5(f"lock\n{account}\n{trigger}")


def decision_id(action: Action) -> str | None:
    """The audit row id of ``action``: (kind, node, call uuid, rule) for a decision on a call,
    (kind, lock id, origin) for a lock or an unlock; None for a decision that names neither
    (it gets a random id)."""
    rule = action.rule.value if action.rule is not None else "-"
    dry = "dry" if action.dry_run else "real"
    lock_id = action.extra.get("lock_id")
    if action.kind in (ActionKind.LOCK, ActionKind.UNLOCK) and lock_id is not None:
        return _uuid5(f"{action.kind.value}\n{lock_id}\n{action.extra.get('origin', '')}")
    if action.uuid is not None and action.node is not None:
        return _uuid5(f"{action.kind.value}\n{action.node}\n{action.uuid}\n{rule}\n{dry}")
    return None
