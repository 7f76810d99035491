"""Locks: whether one is in force, when it expires, when violations lead to one and for how
long (escalation).  Pure functions of the view, the limits and both clocks."""
from __future__ import annotations

from collections.abc import Sequence

from esl_guard.model import Limits, Lock, Rule, clause_of, format_duration
from esl_guard.policy.verdict import AccountView, Verdict
from esl_guard.policy.windows import count_from, count_since

#: Earlier locks within this many seconds make the next one longer (``lock_escalation``).
ESCALATION_WINDOW = 30 * 86400.0


def lock_active(lock: Lock | None, wall: float) -> bool:
    """THE "is this account locked" test: a lock is in force until its wall-clock expiry."""
    return lock is not None and (lock.until_wall is None or lock.until_wall > wall)


def check_lock_expiry(view: AccountView, limits: Limits, now: float,
                      wall: float) -> Verdict | None:
    """The account's lock has reached its expiry: it ends (an UNLOCK by ``expiry``)."""
    lock = view.lock
    if lock is None or lock.until_wall is None or lock.until_wall > wall:
        return None
    return Verdict(Rule.LOCKED, clause_of(Rule.LOCKED), uuid=None, node=None,
                   detail=f"lock {lock.lock_id} expired", violation=False)


def escalation_count(history: Sequence[float], wall: float) -> int:
    """Earlier locks (wall times, oldest first) that still make the next lock longer."""
    return count_from(history, wall - ESCALATION_WINDOW)


def lock_duration(history: Sequence[float], limits: Limits, wall: float) -> float | None:
    """How long the next automatic lock lasts (None = forever): ``lock_duration`` times
    ``lock_escalation`` per earlier lock in the last 30 days, capped by ``lock_duration_max``."""
    if limits.lock_duration is None:
        return None
    duration = limits.lock_duration * (limits.lock_escalation ** escalation_count(history, wall))
    if limits.lock_duration_max is not None:
        duration = min(duration, limits.lock_duration_max)
    return duration


def check_lock_after(view: AccountView, limits: Limits, now: float, wall: float,
                     trigger: Rule | None = None) -> Verdict | None:
    """A violation happened at ``now``: with the earlier ones in ``view.violations`` (not
    including it), does it reach ``lock_after``?  Then the verdict is a lock until
    ``verdict.until``.  No lock decision while a lock is in force.  ``trigger``: the rule of
    the violation, whose clause the lock carries."""
    after = limits.lock_after
    if after is None or lock_active(view.lock, wall):
        return None
    n = min(count_since(view.violations, now - after.window) + 1, after.count)
    if n < after.count:
        return None
    duration = lock_duration(view.lock_history, limits, wall)
    observed = f"{n}/{format_duration(after.window)}"
    return Verdict(Rule.LOCK_AFTER, clause_of(trigger) if trigger else clause_of(Rule.LOCK_AFTER),
                   limit=str(after), observed=observed,
                   detail=f"{observed} violations (lock_after {after})", violation=False,
                   until=None if duration is None else wall + duration)
