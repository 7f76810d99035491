"""What the tracker counts of an account's calls (:class:`AccountState`) and of its calls to one
destination class (:class:`ClassState`, issue 12): live calls, the call-rate window, the
detectors' memory and the minute budget's window.  Plain state, no decisions: the rules in
:mod:`esl_guard.policy` read it through an ``AccountView``; the tracker changes it.

Both are :class:`~esl_guard.timers.TimerNode` s: the tracker arms one in its budget wheel
when its answered calls could use up ``max_minutes``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from esl_guard.policy import MinuteWindow, RecentCalls
from esl_guard.timers import TimerNode

if TYPE_CHECKING:
    from esl_guard.tracker import Call


class Usage(TimerNode):
    """Counted calls and windows of an account, or of its calls to one class.

    ``account``: the account's name; ``cls``: the class (None for the account itself);
    ``acct``: the account's own :class:`AccountState`.  ``creations``: the newest (limit + 1)
    call creations, oldest first.  ``minutes``: ended answered intervals (``max_minutes``),
    None while it is off.  ``budget_at``: when its budget timer is armed for.
    """

    __slots__ = ("account", "cls", "acct", "calls", "creations", "recent", "minutes",
                 "budget_at")

    def __init__(self, account: str, cls: str | None, acct: AccountState | None = None) -> None:
        self.tprev = None
        self.tnext = None
        self.account = account
        self.cls = cls
        # an AccountState's is itself (no lie at run time: compiled code checks the type)
        self.acct: AccountState = acct if acct is not None else self  # type: ignore[assignment]
        self.calls: set[Call] = set()        # live counted calls, on every node
        self.creations: list[float] | None = None
        self.recent: RecentCalls | None = None  # only while a detector with memory is on
        self.minutes: MinuteWindow | None = None
        self.budget_at: float | None = None

    @property
    def name(self) -> str:
        return self.account

    def minutes_used(self, window: float, now: float) -> float:
        """Seconds answered in the window ``(now - window, now]``, live calls included (moves
        the ended calls' window forward)."""
        return self.budget_state(window, now)[0]

    def budget_state(self, window: float, now: float) -> tuple[float, int]:
        """(seconds answered in the window, live calls included; answered live calls not
        already condemned), in one pass over the live calls (on the event path)."""
        horizon = now - window
        used = 0.0
        held = self.minutes
        if held is not None:
            held.advance(horizon)
            used = held.used()
        running = 0
        for c in self.calls:  # live_seconds, written out
            a = c.answered
            if a is not None:
                if a < now:
                    used += now - (a if a > horizon else horizon)
                running += not c.doomed
        return used, running

    def answered_live(self) -> list[Call]:
        """Its answered live calls not already condemned, in a stable order."""
        return sorted((c for c in self.calls if c.answered is not None and not c.doomed),
                      key=lambda c: c.uuid)

    def add_minutes(self, answered: float, ended: float) -> None:
        held = self.minutes
        if held is None:
            held = self.minutes = MinuteWindow()
        held.add(answered, ended)


class ClassState(Usage):
    """An account's calls to one destination class (the class limits apply to them)."""

    __slots__ = ()

    def __init__(self, acct: AccountState, cls: str) -> None:
        super().__init__(acct.account, cls, acct)


class AccountState(Usage):
    __slots__ = ("violations", "dry_violations", "idle_since", "queued", "classes")

    def __init__(self, name: str, now: float) -> None:
        super().__init__(name, None)
        # The newest (limit + 1) violations, oldest first: enough to tell whether more than
        # `limit` fall in the sliding window.
        self.violations: list[float] | None = None
        self.dry_violations: list[float] | None = None  # a dry run's, kept apart
        self.idle_since = now                # when its last live call ended
        self.queued = False                  # in the tracker's idle queue
        self.classes: dict[str, ClassState] | None = None  # only once it called a class

    def class_state(self, cls: str) -> ClassState:
        classes = self.classes
        if classes is None:
            classes = self.classes = {}
        state = classes.get(cls)
        if state is None:
            state = classes[cls] = ClassState(self, cls)
        return state

    def usages(self) -> list[Usage]:
        """The account itself and each of its classes."""
        return [self, *(self.classes.values() if self.classes else ())]
