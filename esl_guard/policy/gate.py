"""The admission gate pushed into FreeSWITCH: is an account's NEXT call blocked?

An observer on the event socket cannot beat a far end that answers within a millisecond, so
esl-guard also tells FreeSWITCH, ahead of time, which accounts may not place another call; the
shipped dialplan snippet (``esl-guard example dialplan``) reads it with
``${hash(select/<gate realm>/${accountcode})}`` and refuses the call synchronously, before
routing.  Locks have their own realm (:mod:`esl_guard.policy.locks`); this one holds the limits
that open again by themselves: the concurrency limit (when a call ends) and the call rate (when
the oldest call of the window leaves it).

The mod_hash scheme (documented in README "FreeSWITCH side"):

- realm :func:`gate_realm` (``admit_<lock_realm>``, ``admit_esl_guard`` by default: a realm
  that neither begins with the lock realm followed by ``_`` nor is such a beginning of it, so
  mod_hash's ``<realm>_<key>`` names of the two can never be equal);
- key ``ACCOUNT`` for the account's own limits, ``ACCOUNT:CLASS`` for an account's destination
  class (issue 12, section 2: ``:`` is in no account code, see ``esl_guard.safety``);
- value ``REASON:UNTIL``: REASON ``busy`` (``max_concurrent_calls``, the dialplan answers
  486 Busy Here) or ``rate`` (``max_call_rate``, 503 Service Unavailable); UNTIL the epoch
  second after which the dialplan ignores the entry (``${strepoch()}``), so an entry nobody
  deletes (esl-guard stopped, its link down) never refuses a call for long: a rate entry ends
  when the window reopens (rounded down: never late), a busy entry :data:`GATE_TTL` after it was
  pushed, and esl-guard pushes it again every :data:`GATE_REFRESH` while the account stays busy.

Pure: ``now`` (monotonic) and ``wall`` (epoch) are arguments.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from esl_guard.model import Limits, Rule
from esl_guard.policy.minutes import EPSILON, budget, over_budget
from esl_guard.policy.verdict import AccountView

#: How long a busy entry stays in force in FreeSWITCH without being pushed again.
GATE_TTL = 60.0
#: How often esl-guard pushes the busy entries again (well within GATE_TTL).
GATE_REFRESH = 20.0

BUSY = "busy"
RATE = "rate"
MINUTES = "minutes"


@dataclass(frozen=True, slots=True)
class Gate:
    """The account's next call is refused by the dialplan.  ``reopens``: when it is admitted
    again by itself (monotonic; None: when one of its calls ends)."""

    reason: str  # BUSY, RATE or MINUTES: the SIP response the dialplan gives
    rule: Rule
    reopens: float | None = None


def gate_realm(lock_realm: str) -> str:
    """The mod_hash realm of the admission gate, beside the lock realm."""
    return f"admit_{lock_realm}"


def gate_key(account: str, destination_class: str | None = None) -> str:
    """The mod_hash key: ``ACCOUNT``, or ``ACCOUNT:CLASS`` for a destination class."""
    return account if destination_class is None else f"{account}:{destination_class}"


def _pushed(rule: Rule, limits: Limits) -> bool:
    """A rule in dry run or ``warn_only`` refuses nothing, so nothing is pushed for it."""
    warn = limits.warn_only
    return not limits.dry_run and (warn is None or rule.value not in warn)


def next_call_gate(view: AccountView, limits: Limits, now: float, wall: float,
                   ended: Sequence[tuple[float, float]] = (), answered_live: int = 0
                   ) -> Gate | None:
    """Whether the account's next call (or its next call to a destination class, with the
    class's view and limits) would be over a limit that esl-guard pushes into the dialplan,
    in the order of the admission rules (``max_call_rate``, ``max_concurrent_calls``,
    ``max_minutes``, as :func:`esl_guard.policy.admit` decides):

    - ``max_call_rate = N/W``: N attempts in the window ``(now - W, now]`` already; it reopens
      when the Nth newest leaves it, at ``creations[-N] + W``;
    - ``max_concurrent_calls = N``: N calls up already (``view.live``, every node);
    - ``max_minutes = N/W``: the window holds N answered minutes (``view.minutes``, live calls
      included).  With ``answered_live`` calls up it reopens when one ends (the tracker
      decides again then); with none, at :func:`minutes_reopen` of the ``ended`` intervals.

    ``view.creations`` must hold at least the newest N attempts (the tracker keeps N + 1)."""
    rate = limits.max_call_rate
    creations = view.creations
    if rate is not None and len(creations) >= rate.count and _pushed(Rule.RATE, limits):
        reopens = creations[-rate.count] + rate.window  # rate.count >= 1 (the conf checks it)
        if reopens > now:
            return Gate(RATE, Rule.RATE, reopens)
    cap = limits.max_concurrent_calls
    if cap is not None and view.live >= cap and _pushed(Rule.CONCURRENCY, limits):
        return Gate(BUSY, Rule.CONCURRENCY)
    minutes = limits.max_minutes
    if minutes is not None and over_budget(view.minutes, limits) \
            and _pushed(Rule.MINUTES, limits):
        if answered_live:
            return Gate(MINUTES, Rule.MINUTES)
        return Gate(MINUTES, Rule.MINUTES,
                    minutes_reopen(ended, minutes.window, budget(minutes), now))
    return None


def minutes_reopen(ended: Sequence[tuple[float, float]], window: float, seconds: float,
                   now: float) -> float:
    """The first moment from ``now`` on at which the answered intervals ``ended`` (no call
    up) hold less than ``seconds`` in the sliding window ``(t - window, t]``.  As the window's
    start ``h = t - window`` moves, each interval ``(a, e)`` counts ``e - max(a, h)`` until
    ``h`` reaches ``e``: the sum falls piecewise linearly, at a slope of the number of
    intervals that ``h`` is inside; walked from ``now - window`` over their starts and ends."""
    goal = seconds - 2 * EPSILON
    h = now - window
    live = [(a, e) for a, e in ended if e > h]
    used = sum(e - max(a, h) for a, e in live)
    if used < goal:
        return now
    slope = sum(1 for a, _ in live if a <= h)  # intervals the window's start is inside
    changes = sorted([(a, 1) for a, _ in live if a > h] + [(e, -1) for _, e in live])
    for p, delta in changes:  # O(n log n): the slope changes only at starts and ends
        if slope and used - slope * (p - h) < goal:
            return h + (used - goal) / slope + window
        used -= slope * (p - h)
        h = p
        slope += delta
    return h + window  # every interval has left the window


def gate_value(gate: Gate, now: float, wall: float, ttl: float = GATE_TTL) -> str:
    """The mod_hash value ``REASON:UNTIL`` of a gate pushed at ``now``/``wall``."""
    if gate.reopens is None:
        until = wall + ttl
    else:
        until = wall + (gate.reopens - now)
    return f"{gate.reason}:{int(until)}"


def stale_gate_keys(entries: Mapping[str, str], gates: Mapping[str, object]) -> list[str]:
    """Entries of the gate realm to delete after a connect: every key that is not a gate now
    (an account whose limit reopened while esl-guard, or its link, was down)."""
    return sorted(key for key in entries if key not in gates)
