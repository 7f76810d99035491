"""The tracker's locks (a part of :class:`esl_guard.tracker.Tracker`): taking one (``lock_after``,
an operator's), refusing a locked account's calls, releasing and confirming them, and the lock
state restored at start-up (locks still pending, the escalation history, the ``lock_after``
windows).  The decisions are in :mod:`esl_guard.policy.locks`.
"""
from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from esl_guard.callstate import Call
from esl_guard.gates import GatesMixin
from esl_guard.model import Action, ActionKind, Limits, Lock, Rule, clause_of
from esl_guard.policy import AccountView, check_lock_expiry
from esl_guard.timers import TimerNode
from esl_guard.usage import AccountState


class LocksMixin(GatesMixin):
    """Locks of the :class:`~esl_guard.tracker.Tracker` (the attributes below are the
    tracker's)."""

    accounts: dict[str, AccountState]
    locks: dict[str, Lock]
    lock_history: dict[str, deque[float]]
    limits_for: Callable[[str], Limits]
    wall_clock: Callable[[], float]
    fail_closed: bool
    gates: dict
    _lock_timers: list[tuple[float, str, str]]
    _regate_soon: set[str]
    _windows_reset: set[str] | None

    # Implemented by a subclass (the Tracker, or a mixin below it):
    def _account_state(self, account: str, now: float) -> AccountState:
        raise NotImplementedError

    def _went_idle(self, st: AccountState, now: float) -> None:
        raise NotImplementedError

    @staticmethod
    def _disarm(node: TimerNode) -> None:
        raise NotImplementedError

    def _lock(self, lock: Lock, limit: str | None = None, observed: str | None = None,
              clause: str | None = None) -> list[Action]:
        self.locks[lock.account] = lock
        if lock.until_wall is not None:
            heapq.heappush(self._lock_timers, (lock.until_wall, lock.account, lock.lock_id))
        limits = self.limits_for(lock.account)
        rule = Rule.LOCK_AFTER if lock.origin == "auto" else Rule.MANUAL
        actions = [Action(ActionKind.LOCK, lock.account, rule, limit=limit, observed=observed,
                          until=lock.until_wall, detail=lock.reason,
                          clause=clause or clause_of(rule),
                          extra={"lock_id": lock.lock_id, "origin": lock.origin})]
        st = self.accounts.get(lock.account)
        if st is not None:
            for call in sorted(st.calls, key=lambda c: c.uuid):
                actions.append(self._refuse_locked(call, limits))
            self._went_idle(st, st.idle_since)
        return actions

    def _refuse_locked(self, call: Call, limits: Limits) -> Action:
        """Hang up a counted call of a locked account (a lock means no calls at all)."""
        assert call.acct is not None and call.account is not None
        call.acct.calls.discard(call)
        if call.cls is not None:
            call.cls.calls.discard(call)
        call.counted = False
        call.doomed = True
        self._disarm(call)
        if call.account in self.gates:  # no clock here: the next tick decides it again
            self._regate_soon.add(call.account)
        lock = self.locks[call.account]
        return Action(ActionKind.HANGUP, call.account, Rule.LOCKED, call.node, call.uuid,
                      cause=limits.hangup_cause, detail=f"account locked: {lock.reason}",
                      clause=clause_of(Rule.LOCKED), destination=call.destination,
                      destination_class=None if call.cls is None else call.cls.cls)

    def apply_lock(self, lock: Lock) -> list[Action]:
        """A lock known from the database (start-up, manual `esl-guard lock`)."""
        current = self.locks.get(lock.account)
        if current is not None and current.lock_id == lock.lock_id:
            current.pending = False
            return []
        return self._lock(lock)

    def release_lock(self, account: str, origin: str, lock_id: str | None = None) -> list[Action]:
        """End the account's lock; with ``lock_id``, only if it is that lock (a lock's expiry
        or unlock never ends a newer one)."""
        lock = self.locks.get(account)
        if lock is None or (lock_id is not None and lock.lock_id != lock_id):
            return []
        del self.locks[account]
        return [Action(ActionKind.UNLOCK, account, Rule.MANUAL if origin == "manual" else None,
                       detail=f"unlocked ({origin})", clause=clause_of(Rule.LOCKED),
                       extra={"lock_id": lock.lock_id, "origin": origin})]

    def confirm_lock(self, account: str, lock_id: str) -> None:
        """The database holds the lock decided here: no longer pending."""
        lock = self.locks.get(account)
        if lock is not None and lock.lock_id == lock_id:
            lock.pending = False

    def pending_since(self) -> float | None:
        """When the oldest lock decided here and not yet in the database began (None: none)."""
        times = [lk.since for lk in self.locks.values() if lk.pending and lk.since is not None]
        return min(times) if times else None

    def lock_expired(self, account: str, slack: float = 0.0) -> bool:
        """Whether the account's lock has reached its expiry (``slack`` seconds early)."""
        lock = self.locks.get(account)
        return lock is not None and check_lock_expiry(
            AccountView(account, lock=lock), self.limits_for(account), 0.0,
            self.wall_clock() + slack) is not None

    def restore_pending_lock(self, lock: Lock) -> None:
        """A lock decided by an earlier run that only the journal holds (not yet in the
        database): in force again, nothing to carry out (its calls were ended then)."""
        lock.pending = True
        self.locks[lock.account] = lock
        if lock.until_wall is not None:
            heapq.heappush(self._lock_timers, (lock.until_wall, lock.account, lock.lock_id))

    def forget_lock(self, account: str, lock_id: str | None = None) -> None:
        """An unlock of an earlier run that only the journal holds: no action, no audit.
        With ``lock_id``, only that lock ends."""
        lock = self.locks.get(account)
        if lock is not None and (lock_id is None or lock.lock_id == lock_id):
            del self.locks[account]

    def restore_lock_history(self, history: Mapping[str, Iterable[float]]) -> None:
        """Wall times of earlier runs' locks per account (escalation), from the database; the
        locks of this run (if the database answered late) are kept."""
        for account, times in history.items():
            self.lock_history[account] = deque(sorted([*times, *self.lock_history.get(account, ())]))

    def set_fail_closed(self, closed: bool) -> None:
        """``fail_mode = closed`` while the lock state is unknown: refuse every new call."""
        self.fail_closed = closed

    def restore_violations(self, windows: Mapping[str, Iterable[float]]) -> None:
        """The lock_after windows of earlier runs (monotonic times, see
        :func:`esl_guard.policy.restored_windows`), so they continue where they were: merged
        with this run's violations, unless a lock decided in this run emptied the window."""
        reset = self._windows_reset or set()
        self._windows_reset = None
        for account, times in windows.items():
            if account in reset:
                continue
            known = self.accounts.get(account)
            kept = sorted([*times, *((known.violations or ()) if known else ())])
            st = self._account_state(account, kept[-1] if kept else 0.0)
            st.violations = kept
