"""What a rule reads (:class:`AccountView`, :class:`CallFacts`) and what it returns
(:class:`Verdict`).  Plain data: no I/O, no clock."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from esl_guard.model import Lock, Rule

if TYPE_CHECKING:
    from esl_guard.policy.detectors import RecentCalls


class CallFacts(Protocol):
    """The facts of the call being decided that a rule may read.

    The tracker's own call object satisfies it (no copy on the event path); tests and the
    replay use :class:`CallInfo`.  Issues 12/13 add fields here (destination, caller ID,
    source address, context) as rules need them.
    """

    @property
    def uuid(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def answered(self) -> float | None: ...
    # Facts of the event that made the call known (None when unknown, e.g. adopted by a resync).
    @property
    def destination(self) -> str | None: ...  # Caller-Destination-Number, "+" kept
    @property
    def caller_id(self) -> str | None: ...  # Caller-Caller-ID-Number
    @property
    def source_ip(self) -> str | None: ...  # variable_sip_network_ip, else Caller-Network-Addr
    @property
    def context(self) -> str | None: ...  # Caller-Context


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A plain :class:`CallFacts` (tests, replay)."""

    uuid: str
    node: str = ""
    answered: float | None = None  # monotonic time of the answer, None = not answered
    destination: str | None = None
    caller_id: str | None = None
    source_ip: str | None = None
    context: str | None = None


class AccountView:
    """A read-only summary of one account's state, as a rule sees it (rules never assign to
    it).  A plain class with its ``__init__`` written out, not a dataclass: it is built once or
    twice per new call on the event path, and a dataclass's generated ``__init__`` would stay
    interpreted Python when the policy is compiled (setup.py).

    Times in ``creations`` and ``violations`` are monotonic (``now``'s clock), oldest first;
    ``lock_history`` holds wall-clock times of earlier locks, oldest first.  ``live`` counts the
    account's counted calls on every node, the call being decided excluded.  ``recent``: the
    detectors' memory (None: no detector on); ``inbound_live``: live calls to the account
    (max_inbound_concurrent_calls only); ``minutes``: seconds of answered calls in the
    max_minutes window, live calls included (0 when off); ``lock_state_unknown``: fail_mode =
    closed while the lock state is unknown.
    """

    __slots__ = ("account", "live", "creations", "violations", "lock", "lock_state_unknown",
                 "lock_history", "call", "recent", "inbound_live", "minutes")

    def __init__(self, account: str, live: int = 0, creations: Sequence[float] = (),
                 violations: Sequence[float] = (), lock: Lock | None = None,
                 lock_state_unknown: bool = False, lock_history: Sequence[float] = (),
                 call: CallFacts | None = None, recent: RecentCalls | None = None,
                 inbound_live: int = 0, minutes: float = 0.0) -> None:
        self.account = account
        self.live = live
        self.creations = creations
        self.violations = violations
        self.lock = lock
        self.lock_state_unknown = lock_state_unknown
        self.lock_history = lock_history
        self.call = call
        self.recent = recent
        self.inbound_live = inbound_live
        self.minutes = minutes

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"AccountView({fields})"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision of one rule, as data.

    ``violation``: True when a limit was exceeded (the call is hung up, the violation is
    recorded and counts toward ``lock_after``); False for a refusal because of a lock, an
    expiry or a lock decision, which is not a violation of its own.  ``until``: for a lock
    verdict, the wall-clock expiry (None = forever).
    """

    rule: Rule
    clause: str | None
    limit: str | None = None
    observed: str | None = None
    uuid: str | None = None
    node: str | None = None
    detail: str = ""
    violation: bool = True
    until: float | None = None
