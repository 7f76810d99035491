"""The tracker's admission gate (issue 12, section 1): for each account, and for each of its
destination classes, whether its NEXT call is refused by the dialplan before routing, kept in
:attr:`GatesMixin.gates` under its mod_hash key (``ACCOUNT``, ``ACCOUNT:CLASS``); each change
is queued (:attr:`GatesMixin.gate_changes`) for the service to push into FreeSWITCH.  The
decision is the pure :func:`esl_guard.policy.gate.next_call_gate`;
:class:`~esl_guard.tracker.Tracker` derives from :class:`GatesMixin`.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

from esl_guard.classes import ClassesMixin
from esl_guard.model import Limits
from esl_guard.policy import AccountView, CallFacts, Destinations, over_budget
from esl_guard.policy.gate import Gate, gate_key, next_call_gate
from esl_guard.usage import AccountState, Usage

if TYPE_CHECKING:
    from esl_guard.tracker import Call


def _gated(limits: Limits) -> bool:
    """Whether ``limits`` have a limit the gate pushes."""
    return (limits.max_call_rate is not None or limits.max_concurrent_calls is not None
            or limits.max_minutes is not None)


class GatesMixin(ClassesMixin):
    """The admission gate of the :class:`~esl_guard.tracker.Tracker` (the attributes below are
    the tracker's; it initialises the three gate ones)."""

    accounts: dict[str, AccountState]
    destinations: Destinations
    limits_for: Callable[[str], Limits]
    wall_clock: Callable[[], float]
    #: the gates in force, by mod_hash key (``gate_key``)
    gates: dict[str, Gate]
    #: keys whose gate changed since the service last pushed them (newest last)
    gate_changes: list[str]
    #: (reopens, key): when a gate with a ``reopens`` time is decided again (monotonic)
    _gate_timers: list[tuple[float, str]]
    #: False: no gate is kept (a replay: gates only tell FreeSWITCH what the tracker's
    #: decisions already imply, and nothing reads them back)
    gating: bool

    # Implemented by a subclass (the Tracker, or a mixin below it):
    def view(self, account: str, call: Call | None = None) -> AccountView:
        raise NotImplementedError

    def _view(self, st: Usage, call: CallFacts | None) -> AccountView:
        raise NotImplementedError

    def _regate(self, account: str, now: float, limits: Limits | None = None) -> None:
        """Decide again whether the account's next call, and its next call to each of its
        (not exempt) destination classes, is refused by the dialplan."""
        if not self.gating:
            return
        if limits is None:
            limits = self.limits_for(account)
        st = self.accounts.get(account)
        self._regate_key(account, st, limits, now, None)
        dests = self.destinations
        if dests.classes:
            classes = st.classes if st is not None else None
            for cls in dests.classes:
                if cls not in dests.exempt:
                    usage = classes.get(cls) if classes else None
                    self._regate_key(gate_key(account, cls), usage, dests.limits(account, cls),
                                     now, account)

    def _regate_key(self, key: str, usage: Usage | None, limits: Limits, now: float,
                    account: str | None) -> None:
        """One gate: ``usage`` is the account's (``account`` None) or its calls to a class
        (``account`` names the account; None usage: no call to the class yet)."""
        old = self.gates.get(key)
        if old is None and not _gated(limits):
            return
        if usage is None:
            view = self.view(account if account is not None else key)
            if account is not None:  # a class never called: only its limits of zero matter
                view.live, view.creations = 0, ()
            gate = next_call_gate(view, limits, now, self.wall_clock())
        else:
            view = self._view(usage, None)
            ended: list[tuple[float, float]] = []
            live = 0
            if limits.max_minutes is not None:
                view.minutes = self._minutes(usage, limits, now)
                if over_budget(view.minutes, limits):  # only then is the reopening needed
                    if usage.minutes is not None:
                        ended = usage.minutes.intervals()
                    live = sum(1 for c in usage.calls if c.answered is not None)
            gate = next_call_gate(view, limits, now, self.wall_clock(), ended, live)
        if gate == old:
            return
        if gate is None:
            del self.gates[key]
        else:
            self.gates[key] = gate
            if gate.reopens is not None:
                heapq.heappush(self._gate_timers, (gate.reopens, key))
        self.gate_changes.append(key)

    def _gated_account(self, st: AccountState, cls: str | None) -> bool:
        """Whether the account (or its calls to ``cls``) has a gate in force: a call that
        ends then may open it."""
        gates = self.gates
        return st.name in gates or (cls is not None and gate_key(st.name, cls) in gates)

    def regate_all(self, now: float) -> None:
        """Every account's gates again (a reload changed the limits)."""
        accounts = self.accounts.keys() | {key.partition(":")[0] for key in self.gates}
        for account in sorted(accounts):
            self._regate(account, now)

    def take_gate_changes(self) -> list[str]:
        """The keys whose gate changed since the last call, each once, oldest first."""
        changes, self.gate_changes = self.gate_changes, []
        return list(dict.fromkeys(changes))

    def _reopen_gates(self, now: float) -> None:
        timers = self._gate_timers
        while timers and timers[0][0] <= now:
            at, key = heapq.heappop(timers)
            gate = self.gates.get(key)
            if gate is not None and gate.reopens == at:
                self._regate(key.partition(":")[0], now)
