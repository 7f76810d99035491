"""Acting or following (issue 14, a part of :class:`esl_guard.service.Guard`): a hot standby acts on
nothing, its hangups wait in the tracker's deferred hangups; a takeover pushes the locks and
gates and carries out those whose calls are still up and whose reasons still hold.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from esl_guard.model import Action, ActionKind, Rule, clause_of
from esl_guard.node import NodeLink
from esl_guard.safety import describe_account
from esl_guard.tracker import Tracker

syslog = logging.getLogger("esl_guard.service")  # the same logger as the service


class RolesMixin:
    """The role side of :class:`~esl_guard.service.Guard` (its attributes below)."""

    links: dict[str, NodeLink]
    tracker: Tracker
    clock: Callable[[], float]
    active: bool

    if TYPE_CHECKING:
        def _spawn(self, fn: Callable[..., None], *args: Any) -> None: ...
        def _status_changed(self) -> None: ...
        def dispatch(self, actions: list[Action], t0: float | None = None) -> None: ...
        def _record(self, a: Action) -> None: ...
        def _push_all_locks(self, link: NodeLink) -> None: ...
        def _delete_stale_hash(self, link: NodeLink) -> None: ...
        def _push_all_gates(self, link: NodeLink) -> None: ...
        def _delete_stale_gates(self, link: NodeLink) -> None: ...

    def _follow(self, actions: list[Action]) -> None:
        """A hot standby acts on nothing: its hangups (and their violations) wait in the
        tracker's deferred hangups, which a takeover carries out if their call is still up and
        their reason still holds (the active, meanwhile, ended those calls, and the next
        resync forgets them); the rest is the active's to record."""
        for action in actions:
            if (action.kind in (ActionKind.HANGUP, ActionKind.VIOLATION) and not action.dry_run
                    and action.uuid is not None and action.node is not None):
                self.tracker.defer(action)
            if action.kind in (ActionKind.HANGUP, ActionKind.LOCK) and not action.dry_run:
                syslog.info("standby: %s of %s (%s, uuid=%s) left to the active instance",
                            action.kind.value, describe_account(action.account),
                            action.rule.value if action.rule else "-", action.uuid or "-")

    def set_active(self, active: bool) -> None:
        """The role changed: a takeover pushes the locks and carries out, with the state
        already held, the hangups decided while standby whose calls are still up; stepping
        down stops acting."""
        if active == self.active:
            return
        self.active = active
        if active:
            self._take_over()
        self._status_changed()

    def _take_over(self) -> None:
        now = self.clock()
        for lock in list(self.tracker.locks.values()):
            if lock.pending and lock.origin == "auto" and self.tracker.is_locked(lock.account):
                # Decided while standby (or not yet written by the old active): written now,
                # once (the lock id is deterministic).
                self._record(Action(ActionKind.LOCK, lock.account, Rule.LOCK_AFTER,
                                    until=lock.until_wall, detail=lock.reason,
                                    clause=clause_of(Rule.LOCK_AFTER),
                                    extra={"lock_id": lock.lock_id, "origin": lock.origin,
                                           "since": lock.since}))
        actions: list[Action] = []
        for name, link in self.links.items():
            if link.connected:
                self._push_all_locks(link)
                self._spawn(self._delete_stale_hash, link)
                self._push_all_gates(link)
                self._spawn(self._delete_stale_gates, link)
                actions += self.tracker.due_deferred(name, now)
        kills = sum(1 for a in actions if a.kind is ActionKind.HANGUP)
        syslog.warning("takeover: %d locks pushed, %d calls over their limits hung up",
                       sum(1 for lk in self.tracker.locks.values()
                           if self.tracker.is_locked(lk.account)), kills)
        self.dispatch(actions)
