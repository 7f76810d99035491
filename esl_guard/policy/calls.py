"""What the tracker believes about calls it cannot see directly: a channel list that lags behind
events, a node whose link is down, an account with no live calls.  Pure: times are arguments.

- A call seen to end is remembered for :func:`ended_horizon` seconds; a channel list (computed
  before the end, since FreeSWITCH's core database lags behind events) never brings it back,
  and no late event of it (a CHANNEL_PROGRESS_MEDIA after its HANGUP) makes it a call again.
- A channel list omits a call :func:`keeps_unlisted` keeps: one first seen so shortly before the
  list was asked for that the database may not list it yet.
- A node whose link has been down ``node_lost_after`` seconds is lost (:func:`node_lost`): its
  calls stop counting; its next resync re-adopts those really up.
- A node whose Core-UUID changed across a reconnect restarted (:func:`restarted`): its calls
  of before are gone at once.
- A hangup decided while its node's link is down is carried out after the reconnect only for
  the calls the resync lists (:func:`due_hangups`).
- An account with no live calls is forgotten at :func:`release_at`.
- A call whose A-leg ends while legs it bridged stay up goes on in them (:func:`carries_on`):
  an attended transfer.
"""
from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import TypeVar

from esl_guard.model import Limits, Rule
from esl_guard.policy.duration import duration_deadline

#: a call first seen less than this before a channel list was asked for may be missing from it
UNLISTED_GRACE = 5.0
#: how long after ``resync_timeout`` a seen end is remembered (the core database's lag)
ENDED_MARGIN = 120.0
#: an account without live calls is forgotten this long after its last call ended (at the
#: earliest: its rate and lock_after windows are kept while they can still matter)
ACCOUNT_IDLE = 120.0

#: the detectors' memory of an idle account (issue 13) is kept this long after it last changed
RECENT_KEEP = 86400.0

T = TypeVar("T")


def ended_horizon(resync_timeout: float) -> float:
    """Seconds to remember an end: a channel list is applied at most ``resync_timeout`` after
    it was asked for, and lists channels that ended up to :data:`ENDED_MARGIN` before."""
    return resync_timeout + ENDED_MARGIN


def carries_on(counted: bool, live_legs: int) -> bool:
    """Whether a call goes on when its A-leg ends: yes while it counts for its account and
    legs it created (its B-legs, ``Other-Leg-Unique-ID`` = the A-leg) are still up.  After an
    attended transfer (A calls B1, A originates B2, B1 is bridged to B2, A hangs up) both
    remaining legs are B-legs of A that never carry the account
    (tests/fixtures/esl/plain_att_xfer.bin): the call keeps its slot and its duration timer
    until the last of them ends.  For a plain bridge the B-leg's HANGUP follows the A-leg's at
    once, so nothing changes there."""
    return counted and live_legs > 0


def keeps_unlisted(first_seen: float | None, asked: float | None) -> bool:
    """A call the channel list omits stays if its events began less than
    :data:`UNLISTED_GRACE` before the list was asked for (``asked``), or after.  ``asked``
    None: the list is authoritative (a node removed by a reload).  ``first_seen`` None: a call
    known only from an earlier channel list (adopted): the database listed it then, so a
    later list that omits it is right, the call ended (a call adopted, then ended while its
    node's link was down, must not count on after the reconnect).  After a reconnect the
    calls kept are asked about (``uuid_exists``, which reads the switch's sessions, not its
    database): their events came over the earlier connection, so they may have ended unseen
    while the link was down; on a live connection their end would have been seen."""
    if asked is None or first_seen is None:
        return False
    return first_seen > asked - UNLISTED_GRACE


def recheck_after(kept_unlisted: int, interval: float) -> float:
    """Seconds to the next reconciliation: soon (just after :data:`UNLISTED_GRACE`) when this
    one kept calls it did not list, so a call that really ended is not counted for long."""
    return min(interval, UNLISTED_GRACE + 1.0) if kept_unlisted else interval


def needs_answer_time(answered: bool, b_leg: bool, timed: bool, limits: Limits) -> bool:
    """Whether a listed channel's answer time must be asked for (``uuid_dump``, one command
    per channel): an answered A-leg, not yet timed by esl-guard (``timed``: its answer was
    seen or already known), whose account has a ``max_call_duration``."""
    return answered and not b_leg and not timed and limits.max_call_duration is not None


def answered_ago(age: float, answered_at: float | None, wall: float) -> float:
    """Seconds since a listed call was answered: from its answer time (``uuid_dump``'s
    ``Caller-Channel-Answered-Time``) when known, else from its creation (``age``, at most
    one second short: ``created_epoch`` has whole seconds)."""
    if answered_at is None:
        return age
    return max(0.0, wall - answered_at)


def node_lost(down_since: float | None, now: float, lost_after: float) -> bool:
    """The node's link has been down for ``lost_after`` seconds: its calls stop counting."""
    return down_since is not None and now - down_since >= lost_after


def restarted(before: str | None, now: str | None) -> bool:
    """The switch's Core-UUID changed across a reconnect: FreeSWITCH restarted, and every call
    of its previous run ended with it, whatever a channel list asked for soon after would keep
    (:func:`keeps_unlisted`).  Unknown on either side: no conclusion."""
    return before is not None and now is not None and before != now


def due_hangups(deferred: Mapping[str, Sequence[T]], listed: Container[str]
                ) -> tuple[list[T], list[str]]:
    """Of the hangups deferred while a node's link was down (uuid -> actions), those to carry
    out now (their call is listed up) and the uuids of calls that ended meanwhile."""
    due: list[T] = []
    gone: list[str] = []
    for uuid, actions in deferred.items():
        if uuid in listed:
            due.extend(actions)
        else:
            gone.append(uuid)
    return due, gone


def still_due(rule: Rule | None, locked: bool, answered: float | None, limits: Limits,
              now: float) -> bool:
    """Whether a hangup deferred while its node's link was down (for ``rule``) is still right
    when the link is back: not if the account's lock ended meanwhile, a reload made it a dry run
    or raised the duration limit past the call's age (``answered``: monotonic, None when
    unknown).  Admission decisions (concurrency, rate, detectors) stand as they were made."""
    if limits.dry_run:
        return False
    if rule is Rule.LOCKED:
        return locked
    if rule is Rule.DURATION and answered is not None:
        deadline = duration_deadline(answered, limits)
        return deadline is not None and now >= deadline
    return True


def violation_counts_now(dry_run: bool, reachable: bool) -> bool:
    """Whether a violation counts toward ``lock_after`` when it is decided: not while its
    call's node is unreachable.  Its hangup then waits for the reconnect (:func:`due_hangups`,
    :func:`still_due`), and so does the violation: it is recorded and counted only when the
    hangup is carried out.  A call that ended meanwhile (perhaps before its deadline, the
    guard cannot tell) earns the account no lock.  A dry run's actions are never held."""
    return dry_run or reachable


def release_at(idle_since: float, creations: Sequence[float], violations: Sequence[float],
               limits: Limits, recent_last: float | None = None) -> float:
    """When an account with no live calls since ``idle_since`` may be forgotten: after
    :data:`ACCOUNT_IDLE`, and not before its newest call creation left the ``max_call_rate``
    window nor its newest violation the ``lock_after`` window, nor :data:`RECENT_KEEP` after
    the detectors' memory (``recent_last``, issue 13) last changed."""
    at = idle_since + ACCOUNT_IDLE
    if recent_last is not None:
        at = max(at, recent_last + RECENT_KEEP)
    rate = limits.max_call_rate
    if rate is not None and creations:
        at = max(at, creations[-1] + rate.window)
    after = limits.lock_after
    if after is not None and violations:
        at = max(at, violations[-1] + after.window)
    return at
