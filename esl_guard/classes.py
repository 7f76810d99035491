"""The tracker's destination classes and minute budgets (issue 12), kept apart from the rest of
its state handling: which limits apply to an account's calls to a class, the budget timers
(``max_minutes``), the minutes of ended calls (stored, restored at start-up), exempt calls,
what ``status`` shows per class, and whether an account's next call would be refused
(:meth:`ClassesMixin.blocked`).  :class:`~esl_guard.tracker.Tracker` derives from
:class:`ClassesMixin`; the decisions themselves are pure functions in
:mod:`esl_guard.policy.destinations` and :mod:`esl_guard.policy.minutes`.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from esl_guard.model import Action, ActionKind, Limits, Lock
from esl_guard.policy import (
    AccountView,
    CallFacts,
    Destinations,
    MinuteWindow,
    Verdict,
    check_minutes,
    minutes_deadline,
    next_call_blocked,
    over_budget,
)
from esl_guard.policy.calls import RECENT_KEEP
from esl_guard.safety import describe_account
from esl_guard.timers import TimerWheel
from esl_guard.usage import AccountState, Usage

if TYPE_CHECKING:
    from esl_guard.tracker import Call


class ClassesMixin:
    """Destination classes and minute budgets of the :class:`~esl_guard.tracker.Tracker`
    (the attributes below are the tracker's)."""

    accounts: dict[str, AccountState]
    locks: dict[str, Lock]
    destinations: Destinations
    limits_for: Callable[[str], Limits]
    wall_clock: Callable[[], float]
    minutes_out: deque[tuple[str, str | None, float, float]]
    _budgets: TimerWheel[Usage]

    # Implemented by a subclass (the Tracker, or a mixin below it):
    def view(self, account: str, call: Call | None = None) -> AccountView:
        raise NotImplementedError

    def _view(self, st: Usage, call: CallFacts | None) -> AccountView:
        raise NotImplementedError

    def _account_state(self, account: str, now: float) -> AccountState:
        raise NotImplementedError

    def _apply(self, call: Call, verdict: Verdict, limits: Limits, now: float
               ) -> list[Action]:
        raise NotImplementedError

    def _regate(self, account: str, now: float, limits: Limits | None = None) -> None:
        raise NotImplementedError

    def _limits_of(self, st: Usage) -> Limits | None:
        """The limits of an account, or of its calls to a class (None: no longer configured)."""
        if st.cls is None:
            return self.limits_for(st.account)
        dests = self.destinations
        return dests.limits(st.account, st.cls) if st.cls in dests.classes else None

    def _minutes(self, st: Usage, limits: Limits, now: float) -> float:
        rate = limits.max_minutes
        return 0.0 if rate is None else st.minutes_used(rate.window, now)

    def blocked(self, account: str, now: float) -> dict[tuple[str, str | None], Verdict]:
        """Whether the account's NEXT call would be refused, and why, for the account
        (key ``(account, None)``) and for each of its (not exempt) destination classes (key
        ``(account, CLASS)``): :func:`esl_guard.policy.next_call_blocked` on the state held
        now.  Absent key: that call would be admitted (as far as the facts of the call itself,
        such as its caller ID, do not matter).  For pre-answer admission state (mod_hash)."""
        wall = self.wall_clock()
        st = self.accounts.get(account)
        out: dict[tuple[str, str | None], Verdict] = {}
        dests = self.destinations
        scopes: list[tuple[str | None, Limits]] = [(None, self.limits_for(account))]
        scopes += [(c, dests.limits(account, c)) for c in dests.classes if c not in dests.exempt]
        for cls, limits in scopes:
            usage: Usage | None = st
            if st is not None and cls is not None:
                usage = st.classes.get(cls) if st.classes else None
            if usage is None:
                view = self.view(account) if st is None else self._view(st, None)
                if cls is not None:  # no call to the class yet: only its limits of zero
                    view.live, view.creations = 0, ()
                    view.recent = None
            else:
                view = self._view(usage, None)
                view.minutes = self._minutes(usage, limits, now)
            verdict = next_call_blocked(view, limits, now, wall)
            if verdict is not None:
                out[(account, cls)] = verdict
        return out

    def class_usage(self, account: str, now: float) -> dict[str, object]:
        """What ``account`` uses now (``status``): its minutes in its ``max_minutes`` window
        and, per destination class it called, its live calls and minutes against the class
        limits."""
        st = self.accounts.get(account)
        if st is None:
            return {}
        out: dict[str, object] = {}
        for usage in st.usages():
            limits = self._limits_of(usage)
            if limits is None:
                continue
            entry: dict[str, object] = {}
            rate = limits.max_minutes
            if rate is not None:
                entry["minutes"] = round(self._minutes(usage, limits, now) / 60.0, 1)
                entry["max_minutes"] = str(rate)
            if usage is st:
                out.update(entry)
                continue
            entry.update(active=len(usage.calls), limit=limits.max_concurrent_calls)
            classes = out.setdefault("classes", {})
            assert isinstance(classes, dict) and usage.cls is not None
            classes[usage.cls] = entry
        return out

    def _record_minutes(self, call: Call, st: AccountState, answered: float,
                        now: float) -> None:
        """An answered call's interval enters the windows of the budgets it counts in, and
        goes to the database (:attr:`minutes_out`) when one of them is on."""
        stored = False
        limits = self.limits_for(st.name)
        if limits.max_minutes is not None:
            st.add_minutes(answered, now)
            stored = True
        cst = call.cls
        if cst is not None:
            climits = self._limits_of(cst)
            if climits is not None and climits.max_minutes is not None:
                cst.add_minutes(answered, now)
                stored = True
        if stored:
            self.minutes_out.append((st.name, None if cst is None else cst.cls, answered, now))

    def _exempt(self, call: Call, cls: str) -> list[Action]:
        """A call to an exempt class (emergency): never refused, hung up or counted, whatever
        the account's state (a lock, fail_mode = closed); logged and audited."""
        number = describe_account(call.destination) if call.destination else "?"
        return [Action(ActionKind.EXEMPT, call.account or "", None, call.node, call.uuid,
                       detail=f"call to {number} in exempt class {cls}: never refused, hung up "
                       "or counted", destination=call.destination, destination_class=cls)]

    def _arm_budget(self, st: Usage, now: float, limits: Limits | None = None) -> None:
        """Arm ``st``'s budget timer for the earliest moment its answered live calls could
        use up its ``max_minutes`` (:func:`esl_guard.policy.minutes_deadline`); an earlier
        timer already armed stays (it looks again when it fires).  ``limits``: ``st``'s, when
        the caller has them."""
        if limits is None:
            limits = self._limits_of(st)
        if limits is None or limits.max_minutes is None:
            return
        used, live = st.budget_state(limits.max_minutes.window, now)
        deadline = minutes_deadline(used, live, limits, now)
        if deadline is None:
            return
        if st.tprev is not None and st.budget_at is not None and st.budget_at <= deadline:
            return
        st.budget_at = deadline
        self._budgets.arm(st, deadline)

    def _budget_due(self, st: Usage, now: float) -> list[Action]:
        """``st``'s budget timer fired: if its window holds the whole budget, its answered live
        calls are hung up (``max_minutes``); else it is armed again."""
        st.budget_at = None
        limits = self._limits_of(st)
        if limits is None or limits.max_minutes is None:
            return []
        used = self._minutes(st, limits, now)
        if not over_budget(used, limits):
            self._arm_budget(st, now)
            return []
        actions: list[Action] = []
        wall = self.wall_clock()
        for call in st.answered_live():
            view = self._view(st, call)
            view.minutes = used
            verdict = check_minutes(view, limits, now, wall)
            if verdict is not None:
                actions += tag(call, self._apply(call, verdict, limits, now))
        self._regate(st.account, now)  # the dialplan refuses its next call (the budget's gate)
        return actions

    def _classes_kept(self, st: AccountState) -> float:
        """Until when an idle account's minute windows and its classes' windows matter."""
        at = 0.0
        for usage in st.usages():
            limits = self._limits_of(usage)
            if limits is None:
                continue
            held = usage.minutes
            if held is not None and held.last_end is not None and limits.max_minutes:
                at = max(at, held.last_end + limits.max_minutes.window)
            if usage is st:
                continue
            rate = limits.max_call_rate
            if rate is not None and usage.creations:
                at = max(at, usage.creations[-1] + rate.window)
            if usage.recent is not None:
                at = max(at, usage.recent.last + RECENT_KEEP)
        return at

    def restore_minutes(self, rows: Iterable[tuple[str, str | None, float, float]],
                        now: float) -> int:
        """Answered intervals of calls that ended in earlier runs (account, class, answered,
        ended; monotonic), from the database: the minute budgets' windows continue where they
        were.  Returns how many intervals were taken."""
        collected: dict[int, tuple[Usage, list[tuple[float, float]]]] = {}
        dests = self.destinations
        n = 0
        for account, cls, answered, ended in rows:
            st = self._account_state(account, ended)
            targets: list[Usage] = []
            if self.limits_for(account).max_minutes is not None:
                targets.append(st)
            if cls is not None and cls in dests.classes and cls not in dests.exempt \
                    and dests.limits(account, cls).max_minutes is not None:
                targets.append(st.class_state(cls))
            for usage in targets:
                collected.setdefault(id(usage), (usage, []))[1].append((answered, ended))
            n += bool(targets)
        for usage, intervals in collected.values():
            held = usage.minutes
            usage.minutes = MinuteWindow([*(held.intervals() if held else ()), *intervals])
            self._arm_budget(usage, now)
        for account in sorted({usage.account for usage, _ in collected.values()}):
            self._regate(account, now)  # a budget used up before the restart: gated at once
        return n


def tag(call: Call, actions: list[Action]) -> list[Action]:
    """Every decision about ``call`` carries its dialled number and destination class."""
    cst = call.cls
    for a in actions:
        if a.uuid == call.uuid:
            a.destination = call.destination
            a.destination_class = None if cst is None else cst.cls
    return actions
