"""Locks: whether one is in force, when it expires, when violations lead to one and for how
long (escalation), how the daemon's locks follow the database's, what a restart restores, and
what mod_hash must hold.  Pure functions of their arguments and both clocks."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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


# --------------------------------------------------------------------------- held vs stored

@dataclass(frozen=True, slots=True)
class LockChange:
    """One step that makes the daemon's locks equal the database's.

    ``kind``: ``apply`` (``lock``, a stored lock, takes effect), ``confirm`` (the held lock
    ``lock`` is in the database now), ``release`` (the held lock ``lock`` ends, ``origin``
    manual or expiry).  ``recorded``: its audit row exists already (the operator's command
    wrote it).
    """

    kind: str
    lock: Lock
    origin: str = ""
    recorded: bool = False


def reconcile_locks(held: Mapping[str, Lock], stored: Mapping[str, Lock],
                    unlocked: Mapping[str, float], wall: float,
                    slack: float = 1.0) -> list[LockChange]:
    """What to change so the daemon holds the database's active locks.

    ``held``: the daemon's locks by account (``pending``: decided here, not written yet);
    ``stored``: the database's active lock of each account; ``unlocked``: the latest
    ``esl-guard unlock`` per account.  A lock ends only by its own id: a pending lock newer
    than the stored one stays (it supersedes it when written), an older one gives way; an
    unlock at or after a pending lock's start ends it, although the database never saw it.
    A confirmed lock missing from the database was unlocked (recorded by the command), or
    expired (``slack`` seconds early: the database drops it at its expiry).
    """
    changes: list[LockChange] = []
    for account in sorted(held.keys() | stored.keys()):
        h, s = held.get(account), stored.get(account)
        if h is not None and h.pending:
            at = unlocked.get(account)
            if at is not None and h.since is not None and at >= h.since:
                changes.append(LockChange("release", h, "manual"))
                continue
        if s is not None:
            if h is not None and h.lock_id == s.lock_id:
                if h.pending:
                    changes.append(LockChange("confirm", h))
            elif h is not None and h.pending and (h.since or 0.0) > (s.since or 0.0):
                pass  # ours is newer and not written yet: it supersedes the stored one
            else:
                changes.append(LockChange("apply", s, recorded=True))
        elif h is not None and not h.pending:
            if h.until_wall is not None and h.until_wall <= wall + slack:
                changes.append(LockChange("release", h, "expiry"))
            else:
                changes.append(LockChange("release", h, "manual", recorded=True))
    return changes


# --------------------------------------------------------------------------- after a restart

def restored_windows(events: Iterable[tuple[str, float, str]]) -> dict[str, list[float]]:
    """The ``lock_after`` window of each account as the daemon held it in memory, from the
    stored history, oldest first: (account, time, kind) with kind ``violation`` or ``lock``.
    A lock decision empties the window, so violations that already led to a lock never count
    again."""
    windows: dict[str, list[float]] = {}
    for account, when, kind in events:
        if kind == "lock":
            windows.pop(account, None)
        elif kind == "violation":
            windows.setdefault(account, []).append(when)
    return windows


# --------------------------------------------------------------------------- mod_hash

def hash_value(until: float | None) -> str:
    """A lock's value in mod_hash, which the shipped dialplan compares with ``${strepoch()}``:
    ``forever``, or the expiry in whole epoch seconds (rounded down, so the dialplan never
    refuses a call after the expiry)."""
    return "forever" if until is None else str(int(until))


def parse_hash_dump(body: str, realm: str) -> dict[str, str]:
    """The entries of ``realm`` in a ``hash_dump db <realm>`` answer, key -> value.

    mod_hash stores ``<realm>_<key>`` and prints one ``D/<realm>_<key>/<value>`` line per entry
    whose name CONTAINS ``<realm>_``; only names that begin with it are the realm's.  An empty
    dump is ``-ERR no reply``."""
    prefix = f"D/{realm}_"
    entries: dict[str, str] = {}
    for line in body.splitlines():
        if not line.startswith(prefix):
            continue
        key, sep, value = line[len(prefix):].partition("/")
        if sep and key:
            entries[key] = value
    return entries


def stale_hash_keys(entries: Mapping[str, str], locks: Mapping[str, Lock], wall: float,
                    state_known: bool) -> list[str]:
    """Entries of the lock realm to delete after a connect: every entry that is not an active
    lock.  While the lock state is unknown (the database unreachable since the start), an
    entry may be a lock the daemon cannot see yet: only entries whose expiry has passed go."""
    stale = []
    for key, value in sorted(entries.items()):
        if key in locks and lock_active(locks[key], wall):
            continue
        if state_known or _expired_value(value, wall):
            stale.append(key)
    return stale


def _expired_value(value: str, wall: float) -> bool:
    text = value[len("until_"):] if value.startswith("until_") else value  # the old format
    try:
        return float(text) <= wall
    except ValueError:
        return False
