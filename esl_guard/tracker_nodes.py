"""The tracker's nodes (a part of :class:`esl_guard.tracker.Tracker`): a complete channel list
applied (``resync``), calls a reconnect showed gone, hangups decided while a node's link was
down (deferred, carried out if still due), and a node lost or removed.  The decisions are in
:mod:`esl_guard.policy.calls`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from esl_guard.callstate import B_LEG, Call, CallEventLike
from esl_guard.model import Action, ActionKind, ChannelRow, Limits
from esl_guard.policy import answered_ago, due_hangups, keeps_unlisted, still_due
from esl_guard.timers import TimerNode
from esl_guard.tracker_locks import LocksMixin
from esl_guard.usage import AccountState


class NodesMixin(LocksMixin):
    """Nodes of the :class:`~esl_guard.tracker.Tracker` (the attributes below are the
    tracker's)."""

    nodes: dict[str, dict[str, Call]]
    ended: dict[str, OrderedDict[str, float]]
    deferred: dict[str, dict[str, list[Action]]]
    deferred_gone: int
    unlisted_kept: int
    unlisted: list[str]
    limits_for: Callable[[str], Limits]
    wall_clock: Callable[[], float]

    # Implemented by a subclass (the Tracker, or a mixin below it):
    def is_locked(self, account: str) -> bool:
        raise NotImplementedError

    def _count_held(self, actions: list[Action], now: float) -> list[Action]:
        raise NotImplementedError

    def _learn_account(self, call: Call, account: str, now: float,
                       ev: CallEventLike | None = None,
                       destination: str | None = None) -> list[Action]:
        raise NotImplementedError

    def _adopt(self, call: Call, account: str, now: float,
               destination: str | None = None) -> list[Action]:
        raise NotImplementedError

    def _arm_duration(self, call: Call, now: float) -> None:
        raise NotImplementedError

    @staticmethod
    def _add_leg(calls: dict[str, Call], uuid: str, parent_uuid: str | None) -> None:
        raise NotImplementedError

    @staticmethod
    def _leg_ended(calls: dict[str, Call], call: Call, uuid: str) -> bool:
        raise NotImplementedError

    def _drop(self, calls: dict[str, Call], call: Call, now: float) -> None:
        raise NotImplementedError

    def _remember_end(self, node: str, uuid: str, now: float) -> None:
        raise NotImplementedError

    def _deadline(self, call: Call) -> tuple[float | None, Limits | None]:
        raise NotImplementedError

    def _account_state(self, account: str, now: float) -> AccountState:
        raise NotImplementedError

    def _count(self, st: AccountState, call: Call, now: float) -> None:
        raise NotImplementedError

    def _uncount(self, call: Call, now: float, record: bool = True) -> None:
        raise NotImplementedError

    @staticmethod
    def _disarm(node: TimerNode) -> None:
        raise NotImplementedError

    def resync(self, node: str, rows: Iterable[ChannelRow], now: float,
               asked: float | None = None) -> tuple[int, int, list[Action]]:
        """Make ``node``'s calls equal a complete ``show channels`` answer, asked for at
        ``asked`` (None: drop every call it omits).

        Returns (added, dropped, actions).  Calls found up that esl-guard had not seen start are
        counted without any limit check (a resync never hangs up a call it adopts over a limit);
        only calls of locked accounts are killed, since a lock means no calls at all.  A call
        followed from its events whose account the answer gives first goes through the policy,
        exactly as if an event had carried the account.

        The answer lags behind events (policy.calls): a call seen to end is never brought back
        by it, and a call first seen shortly before it was asked for is not dropped.  Hangups
        deferred while the node's link was down are returned for the calls it lists.
        """
        calls = self.nodes.setdefault(node, {})
        ended: Mapping[str, float] = self.ended.get(node) or {}
        rows = [row for row in rows if row.uuid not in ended]
        seen = {row.uuid for row in rows}
        actions, gone = due_hangups({u: acts for u, acts in self.deferred.pop(node, {}).items()
                                     if self._still_due(calls.get(u), acts, now)}, seen)
        actions = self._count_held(actions, now)
        doomed = {a.uuid: a.account for a in actions if a.kind is ActionKind.HANGUP}
        self.deferred_gone += len(gone)
        self.unlisted_kept = 0
        self.unlisted = []
        added = 0
        legs: list[ChannelRow] = []
        for row in rows:
            call = calls.get(row.uuid)
            if call is None and row.uuid in doomed:  # forgotten with its node, hung up now
                call = calls[row.uuid] = Call(node, row.uuid)
                call.account = doomed[row.uuid]
                call.doomed = True
                continue
            if row.b_leg or call is B_LEG:
                if call is None:
                    legs.append(row)  # noted in its call once every listed call is in
                continue
            followed = call is not None  # known from its events: a call we saw start
            if call is None:  # adopted from the list: no grace when a later one omits it
                call = calls[row.uuid] = Call(node, row.uuid)
                added += 1
            if call.account is None and row.account and followed:
                # The core db copies the account on CHANNEL_EXECUTE, so a ringing call's account
                # can be listed before any subscribed event carries it: it goes through the
                # policy exactly as if an event had brought it.
                actions.extend(self._learn_account(call, row.account, now,
                                                   destination=row.destination))
            elif call.account is None and row.account:
                actions.extend(self._adopt(call, row.account, now, row.destination))
            if row.answered and call.answered is None:
                call.answered = now - answered_ago(row.age, row.answered_at, self.wall_clock())
                self._arm_duration(call, now)
        for row in legs:  # a B-leg found up: part of its call, which a transfer hands to it
            self._add_leg(calls, row.uuid, row.parent)
        dropped = 0
        for uuid in [u for u in calls if u not in seen]:
            call = calls[uuid]
            if call is B_LEG:
                del calls[uuid]
                continue
            if keeps_unlisted(call.seen, asked):
                self.unlisted_kept += 1
                self.unlisted.append(uuid)
                continue  # too new for the answer: the next one tells
            if call.legs is not None and self._leg_ended(calls, call, uuid):
                continue  # it goes on in its legs the answer lists
            self._drop(calls, call, now)
            dropped += 1
        return added, dropped, actions

    def gone(self, node: str, uuids: Iterable[str], now: float) -> int:
        """Calls the last resync kept though it did not list them (:attr:`unlisted`) which the
        switch says no longer exist (``uuid_exists``): they ended while the link was down,
        unseen.  They end now, as calls a channel list omits.  Returns how many."""
        calls = self.nodes.get(node)
        n = 0
        for uuid in uuids:
            call = calls.get(uuid) if calls is not None else None
            if call is None or call is B_LEG:
                continue
            assert calls is not None
            self._remember_end(node, uuid, now)
            if uuid in self.unlisted:
                self.unlisted.remove(uuid)
                self.unlisted_kept -= 1
            if call.legs is not None and self._leg_ended(calls, call, uuid):
                continue
            self._drop(calls, call, now)
            n += 1
        return n

    def _still_due(self, call: Call | None, actions: list[Action], now: float) -> bool:
        """A deferred hangup whose reason still holds (:func:`esl_guard.policy.still_due`);
        if not, the call goes on: counted and timed again, as an adopted call."""
        for a in actions:
            if a.kind is ActionKind.HANGUP and a.account is not None:
                live = call if isinstance(call, Call) else None
                limits = self.limits_for(a.account)
                if live is not None and live.account is not None and live.cls is not None:
                    limits = self._deadline(live)[1] or limits  # a class's duration limit
                if still_due(a.rule, self.is_locked(a.account),
                             live.answered if live is not None else None, limits, now):
                    return True
                if live is not None:
                    live.doomed = False
                    if not live.counted:
                        st = self._account_state(a.account, now)
                        live.account, live.acct = st.name, st
                        self._count(st, live, now)
                return False
        return True

    def due_deferred(self, node: str, now: float) -> list[Action]:
        """A standby's takeover (issue 14): the hangups deferred on ``node`` (with their
        violations) whose call is still up as its events tell and whose reason still holds.
        Without the node's calls (lost, forgotten) they wait for its next resync."""
        calls = self.nodes.get(node)
        if calls is None:
            return []
        ended: Mapping[str, float] = self.ended.get(node) or {}
        live = {u for u in calls if u not in ended}
        actions, gone = due_hangups({u: acts for u, acts in self.deferred.pop(node, {}).items()
                                     if self._still_due(calls.get(u), acts, now)}, live)
        self.deferred_gone += len(gone)
        return actions

    def defer(self, action: Action) -> None:
        """A hangup (or its violation) decided while its node's link is down: kept for the
        node's next resync, which returns it if the call is still up."""
        assert action.node is not None and action.uuid is not None
        self.deferred.setdefault(action.node, {}).setdefault(action.uuid, []).append(action)

    def forget_node(self, node: str, now: float) -> int:
        """A node lost (its link down ``node_lost_after``) or removed: its calls stop counting
        and are forgotten, not ended (its next resync adopts those still up).  Deferred
        hangups stay: that resync carries them out.  Returns how many calls."""
        calls = self.nodes.pop(node, {})
        n = 0
        for call in calls.values():
            if call is not B_LEG:
                n += call.counted
                self._uncount(call, now, record=False)
                self._disarm(call)
        return n
