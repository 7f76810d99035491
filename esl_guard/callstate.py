"""A tracked call (:class:`Call`) and the events the tracker reads (:class:`CallEventLike`):
the plain state of :mod:`esl_guard.tracker`, which re-exports these names (and
:class:`~esl_guard.admitting.Admitting`, the facts of a call being admitted).
"""
from __future__ import annotations

from typing import Protocol

from esl_guard.model import Limits
from esl_guard.timers import SLOTS_PER_SECOND, TimerNode
from esl_guard.usage import AccountState, ClassState


class CallEventLike(Protocol):
    """A CallEvent, or a LazyEvent that decodes ``account``/``b_leg`` on first use."""

    @property
    def name(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def uuid(self) -> str: ...
    @property
    def account(self) -> str | None: ...
    @property
    def b_leg(self) -> bool: ...
    # Optional (a LazyEvent, a CallEvent): destination, caller_id, source_ip, context, the
    # call facts the detectors read; an event without them (a replayed CDR) has none.


class Call(TimerNode):
    """One tracked A-leg.  ``counted``: it holds a concurrency slot of its account.

    ``legs``: the B-legs it created on its node (uuids, from their ``Other-Leg-Unique-ID``).
    ``moved``: its A-leg ended while some of them were up (an attended transfer,
    :func:`~esl_guard.policy.carries_on`): the call goes on in ``legs``, each of which maps
    to it in the node's table, and ``uuid`` is the first of them (the one a hangup kills).

    Its facts (destination, caller ID, ...) are only read while its admission is decided
    (:class:`Admitting`); nothing of the event is kept.  ``inbound``: a call to the account
    (hosting detector); ``watch_end``: its end goes through the short-call detector.
    """

    __slots__ = ("node", "uuid", "account", "answered", "counted", "doomed", "acct",
                 "inbound", "watch_end", "seen", "destination", "cls", "legs", "moved")
    # A call outside its admission has no other facts (CallFacts).
    caller_id: str | None = None
    source_ip: str | None = None
    context: str | None = None

    def __init__(self, node: str, uuid: str, seen: float | None = None) -> None:
        self.node = node
        self.uuid = uuid
        # when its events first reached esl-guard (monotonic); None for a call known from a
        # channel list only: a later list that omits it is believed (policy.keeps_unlisted)
        self.seen = seen
        self.account: str | None = None
        self.answered: float | None = None
        self.counted = False
        self.doomed = False  # a hangup was decided (or would have been, in dry run)
        self.acct: AccountState | None = None
        self.inbound = False
        self.watch_end = False
        self.destination: str | None = None  # the dialled number, once its account is known
        self.cls: ClassState | None = None   # its destination class's state (issue 12)
        self.legs: list[str] | None = None
        self.moved = False
        # Links in the duration-timer ring holding this call (TimerNode; no super() call on
        # the event path).
        self.tprev = None
        self.tnext = None



#: Action.extra key of a violation decided while its node was unreachable, not yet counted
_HELD = "lock_after_held"

def needs_facts(limits: Limits) -> bool:
    """Whether a rule on for these limits reads the facts of the call being admitted."""
    return (limits.caller_id_allowed is not None or limits.max_inbound_concurrent_calls is not None
            or limits.max_source_ips is not None or limits.max_distinct_destinations is not None
            or limits.max_sequential_destinations is not None)


#: Stands in the calls table for every B-leg: later events of the leg need only its Unique-ID.
B_LEG = Call("", "")

#: Duration timers fire within 1/TIMER_SLOTS_PER_SECOND s (+ the tick) of their deadline.
TIMER_SLOTS_PER_SECOND = SLOTS_PER_SECOND
