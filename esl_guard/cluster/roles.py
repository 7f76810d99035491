"""Who is active: role transitions of one instance, from what it sees of the database.

Pure: no I/O, no clock.  The adapter (``elector``) observes the leadership connection every
:func:`check_every` seconds (is the database reachable, do we hold the session advisory
lock) and feeds :func:`observe`; :func:`may_take` says whether it may try to take the lock.

The rules:
- holding the lock (the database says so) is being active; reachable without holding it is
  being standby (another instance holds it);
- the database unreachable changes nothing: the active stays active and enforces from memory,
  a standby never promotes itself (it cannot take the lock anyway);
- an instance that has never reached the database since it started is active, as a lone
  esl-guard always was (``[database] fail_mode`` applies): enforcement never stops because
  the database is down; it steps down as soon as it sees another instance holds the lock;
- after reaching the database again, a standby waits ``grace`` before trying to take the
  lock, so the instance that was active (which retries at once) keeps it after an outage.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace

#: Checks of the leadership connection per ``failover_after``: a dead active's lock is free
#: once PostgreSQL ends its session, and a standby sees it within one check.
CHECKS_PER_FAILOVER = 5
MIN_CHECK = 0.2


class Role(str, enum.Enum):
    ACTIVE = "active"
    STANDBY = "standby"


@dataclass(frozen=True, slots=True)
class Seen:
    """One observation of the leadership connection."""

    reachable: bool
    holds: bool = False  # we hold the advisory lock (only meaningful when reachable)


@dataclass(frozen=True, slots=True)
class Leadership:
    """The role of this instance and what it has seen, in monotonic seconds."""

    role: Role
    since: float                          # this role since
    reachable_since: float | None = None  # the database reachable without a break since
    ever_reached: bool = False            # the database answered at least once since start


@dataclass(frozen=True, slots=True)
class Change:
    """A role change: one log line and one audit row."""

    old: Role
    new: Role
    reason: str


def starting(now: float) -> Leadership:
    """An instance that has not seen the database yet (see the module's rules)."""
    return Leadership(Role.ACTIVE, now)


def check_every(failover_after: float) -> float:
    """Seconds between two checks of the leadership connection."""
    return max(MIN_CHECK, failover_after / CHECKS_PER_FAILOVER)


def grace(failover_after: float) -> float:
    """How long a standby sees the database before it tries to take the lock (two checks:
    the instance that was active retries at once and keeps its role after an outage)."""
    return 2 * check_every(failover_after)


def may_take(state: Leadership, now: float, failover_after: float) -> bool:
    """Whether to try to take the lock now (the database is reachable)."""
    if state.role is Role.ACTIVE:
        return True
    return state.reachable_since is not None and now - state.reachable_since >= grace(
        failover_after)


def observe(state: Leadership, seen: Seen, now: float) -> tuple[Leadership, Change | None]:
    """The state after ``seen``, and the role change it makes (None: none)."""
    if not seen.reachable:
        return replace(state, reachable_since=None), None
    reachable_since = state.reachable_since if state.reachable_since is not None else now
    new = Role.ACTIVE if seen.holds else Role.STANDBY
    after = replace(state, reachable_since=reachable_since, ever_reached=True)
    if new is state.role:
        return after, None
    if new is Role.ACTIVE:
        reason = "took the leadership (no other instance holds it)"
    elif state.ever_reached:
        reason = "another instance holds the leadership"
    else:
        reason = "another instance holds the leadership (seen at the first contact with " \
                 "the database)"
    return replace(after, role=new, since=now), Change(state.role, new, reason)
