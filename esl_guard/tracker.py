"""The enforcement core's state: calls per node, accounts (live calls, windows), duration
timers, locks.  Pure, no I/O.

The tracker decides nothing itself: it builds an :class:`~esl_guard.policy.AccountView`, asks
the rules in :mod:`esl_guard.policy` for a :class:`~esl_guard.policy.Verdict`, and applies it
(counts, windows, timers, locks) as the :class:`Action` list the adapters must carry out.
Every method takes ``now`` (a monotonic clock, seconds); the wall clock (lock expiry,
escalation) comes from ``wall_clock``.  Costs: an event is O(1) amortised (dict lookups, a
capped list per account window, a timer-wheel ring per answered call); ``tick`` visits only
expired timers.  Nothing ever scans all calls, except ``retime`` on a policy reload and
``resync`` of one node.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable

from esl_guard.admitting import Admitting
from esl_guard.callstate import (
    _HELD,
    B_LEG,
    TIMER_SLOTS_PER_SECOND,
    Call,
    CallEventLike,
    needs_facts,
)
from esl_guard.classes import tag
from esl_guard.events import END_EVENTS
from esl_guard.model import Action, ActionKind, ChannelRow, Limits, Lock, Rule
from esl_guard.policy import (
    ESCALATION_WINDOW,
    AccountView,
    CallFacts,
    Destinations,
    RecentCalls,
    Verdict,
    admit,
    adopt,
    carries_on,
    check_duration,
    check_lock_after,
    check_lock_expiry,
    check_short_call_end,
    counts_as_attempt,
    duration_deadline,
    ended_horizon,
    is_inbound,
    is_short,
    is_warning,
    lock_active,
    release_at,
    sequential_run,
    uses_recent,
    violation_counts_now,
)
from esl_guard.policy.calls import ACCOUNT_IDLE
from esl_guard.policy.gate import Gate
from esl_guard.timers import TimerNode, TimerWheel, disarm
from esl_guard.tracker_nodes import NodesMixin
from esl_guard.usage import AccountState, Usage

__all__ = ["B_LEG", "ESCALATION_WINDOW", "TIMER_SLOTS_PER_SECOND", "AccountState", "Admitting",
           "Call", "CallEventLike", "ChannelRow", "Lock", "Tracker", "needs_facts"]


class Tracker(NodesMixin):
    """The call state (module docstring).  Its parts form one chain of single inheritance,
    ClassesMixin <- GatesMixin <- LocksMixin <- NodesMixin <- Tracker, each declaring as
    overridable methods what it uses of the parts below it: mypyc compiles no other shape
    (setup.py).  ``gating`` False: no admission gate is kept (a replay)."""

    def __init__(self, limits_for: Callable[[str], Limits],
                 wall_clock: Callable[[], float],
                 destinations: Destinations | None = None, gating: bool = True) -> None:
        self.limits_for = limits_for
        self.wall_clock = wall_clock
        #: the destination classes (issue 12); set again on a reload
        self.destinations = destinations if destinations is not None else Destinations()
        self._budgets: TimerWheel[Usage] = TimerWheel()  # max_minutes deadlines
        #: answered intervals of ended calls under a max_minutes, for the database:
        #: (account, class, answered, ended), monotonic; drained by the service
        self.minutes_out: deque[tuple[str, str | None, float, float]] = deque(maxlen=100_000)
        self.nodes: dict[str, dict[str, Call]] = {}
        self.accounts: dict[str, AccountState] = {}
        self.locks: dict[str, Lock] = {}
        self._timers: TimerWheel[Call] = TimerWheel()  # duration deadlines
        self._lock_timers: list[tuple[float, str, str]] = []
        self.lock_history: dict[str, deque[float]] = {}  # wall times of earlier locks (escalation)
        self._lock_ids = map("auto-{}".format, itertools.count())
        #: (account, trigger) -> the id of a lock ``lock_after`` takes; ``trigger`` names the
        #: violation that took it (node/uuid/rule, "" if it has no call): the service derives
        #: a deterministic id from it (issue 14), so two instances take the same lock.
        self.new_lock_id: Callable[[str, str], str] = lambda _a, _t: next(self._lock_ids)
        #: fail_mode = closed while the lock state is unknown (database unreachable at start):
        #: every new call is refused, since any account might be locked.
        self.fail_closed = False
        #: A-legs that ended without ever carrying an account (not tracked, only counted).
        self.untracked_ended = 0
        #: Accounts whose lock_after window a lock decision emptied, until the stored state is
        #: restored (:meth:`restore_violations`): their earlier violations must not come back.
        self._windows_reset: set[str] | None = set()
        #: per node, the uuids of calls seen to end (uuid -> when, oldest first), remembered
        #: ``ended_memory`` seconds: neither a late event nor a lagging channel list brings
        #: them back (policy.calls)
        self.ended: dict[str, OrderedDict[str, float]] = {}
        self.ended_memory = ended_horizon(60.0)
        #: per node, hangups decided while its link was down: uuid -> actions, carried out by
        #: its next resync if the call is still up
        self.deferred: dict[str, dict[str, list[Action]]] = {}
        self._idle: list[tuple[float, str]] = []  # (check at, account): accounts without calls
        #: whether a node's link is up (the service's links); a violation decided while it is
        #: down counts toward lock_after only once its hangup is carried out
        self.reachable: Callable[[str], bool] = lambda node: True
        self.deferred_gone = 0  # deferred hangups dropped: the call ended meanwhile
        self.unlisted_kept = 0  # calls the last resync kept though it did not list them
        #: The admission gate (policy.gate): the gates in force, keyed by their mod_hash key
        #: (``gate_key``: ``ACCOUNT``; ``ACCOUNT:CLASS`` for destination classes), the keys
        #: whose gate changed since the service last pushed them into FreeSWITCH (newest
        #: last; the service drains it), and when rate gates reopen (monotonic).
        self.gates: dict[str, Gate] = {}
        self.gating = gating
        self.gate_changes: list[str] = []
        self._gate_timers: list[tuple[float, str]] = []
        self._regate_soon: set[str] = set()
        self.unlisted: list[str] = []  # ... their uuids (:meth:`gone`)

    # ------------------------------------------------------------------ queries
    def active(self, account: str) -> int:
        st = self.accounts.get(account)
        return len(st.calls) if st else 0

    def active_accounts(self) -> int:
        """Accounts with at least one counted live call."""
        return sum(1 for st in self.accounts.values() if st.calls)

    def live_calls(self) -> int:
        return sum(len(st.calls) for st in self.accounts.values())

    def tracked_channels(self) -> int:
        """A-legs and B-legs this daemon knows of, on every node."""
        return sum(len(calls) for calls in self.nodes.values())

    def is_locked(self, account: str) -> bool:
        return lock_active(self.locks.get(account), self.wall_clock())

    def view(self, account: str, call: Call | None = None) -> AccountView:
        """The read-only summary of ``account`` that the policy rules read."""
        st = self.accounts.get(account)
        if st is None:
            return AccountView(account, 0, (), (), self.locks.get(account), self.fail_closed,
                               self.lock_history.get(account, ()), call)
        return self._view(st, call)

    def _view(self, st: Usage, call: CallFacts | None) -> AccountView:
        """The view of an account (``st``), or of its calls to one class (a ClassState: its
        live calls and windows, the account's lock and violations)."""
        account = st.account
        return AccountView(account, len(st.calls), st.creations or (), st.acct.violations or (),
                           self.locks.get(account), self.fail_closed,
                           self.lock_history.get(account, ()), call, st.recent)

    def busiest(self, n: int = 10) -> list[tuple[str, int]]:
        return heapq.nlargest(n, ((a, len(s.calls)) for a, s in self.accounts.items() if s.calls),
                              key=lambda x: x[1])

    # ------------------------------------------------------------------ events
    def known_event(self, node: str, name: str, uuid: str, now: float) -> bool:
        """Apply an event that needs nothing but its Unique-ID: any event of a B-leg, an end
        event, or an event of a call whose account is known.  False: use :meth:`on_event`."""
        calls = self.nodes.get(node)
        call = calls.get(uuid) if calls is not None else None
        if call is None:
            ended = self.ended.get(node)
            if name in END_EVENTS:  # the end of a call we never tracked, or its second end
                if ended is None:
                    ended = self.ended[node] = OrderedDict()
                if uuid not in ended:
                    ended[uuid] = now
                return True
            return ended is not None and uuid in ended  # a late event of an ended call
        assert calls is not None
        if name in END_EVENTS:
            if call is B_LEG:
                del calls[uuid]
            elif call.legs is not None and self._leg_ended(calls, call, uuid):
                pass  # the call goes on in its other legs
            elif call.watch_end:
                return False  # the short-call detector decides: on_event
            else:
                self._drop(calls, call, now)
            self._remember_end(node, uuid, now)
            return True
        if call is B_LEG:
            return True
        if call.account is None:
            return False
        if call.answered is None and name == "CHANNEL_ANSWER":
            call.answered = now
            self._arm_duration(call, now)
        return True

    def _remember_end(self, node: str, uuid: str, now: float) -> None:
        ended = self.ended.get(node)
        if ended is None:
            ended = self.ended[node] = OrderedDict()
        ended[uuid] = now

    def on_event(self, ev: CallEventLike, now: float) -> list[Action]:
        """Apply one channel event.  ``ev.account`` and ``ev.b_leg`` are read only when needed
        (a LazyEvent decodes them on first use)."""
        if self.known_event(ev.node, ev.name, ev.uuid, now):
            return []
        return self.on_unknown_event(ev, now)

    def on_unknown_event(self, ev: CallEventLike, now: float) -> list[Action]:
        """:meth:`on_event` for an event :meth:`known_event` just declined."""
        calls = self.nodes.get(ev.node)
        if calls is None:
            calls = self.nodes[ev.node] = {}
        call = calls.get(ev.uuid)
        if call is not None and call.watch_end and ev.name in END_EVENTS:
            return self._end_watched(calls, call, now)
        if call is None:
            if ev.b_leg:  # the outbound leg of a bridge is not a call of its own
                self._add_leg(calls, ev.uuid, getattr(ev, "other_leg", None))
                return []
            call = calls[ev.uuid] = Call(ev.node, ev.uuid, now)
        actions: list[Action] = []
        if call.account is None:
            account = ev.account
            if account:
                actions = self._learn_account(call, account, now, ev)
        if call.answered is None and ev.name == "CHANNEL_ANSWER":
            call.answered = now
            self._arm_duration(call, now)
        return actions

    @staticmethod
    def _add_leg(calls: dict[str, Call], uuid: str, parent_uuid: str | None) -> None:
        """A new B-leg: noted in the call that created it (its ``Other-Leg-Unique-ID``), so the
        call can go on in it when its A-leg ends (:meth:`_leg_ended`)."""
        parent = calls.get(parent_uuid) if parent_uuid else None
        if parent is None or parent is B_LEG:
            calls[uuid] = B_LEG
            return
        if parent.legs is None:
            parent.legs = []
        parent.legs.append(uuid)
        calls[uuid] = parent if parent.moved else B_LEG

    @staticmethod
    def _leg_ended(calls: dict[str, Call], call: Call, uuid: str) -> bool:
        """Leg ``uuid`` of a call with B-legs ended.  True: the call goes on in its other legs
        (its A-leg ended while B-legs were up, :func:`~esl_guard.policy.carries_on`, or one of
        the legs it moved to ended); False: the call ends (``call.uuid`` is then ``uuid``)."""
        legs = call.legs
        assert legs is not None
        if not call.moved:
            live = [u for u in legs if calls.get(u) is B_LEG]
            if not carries_on(call.counted, len(live)):
                return False
            del calls[uuid]
            for leg in live:
                calls[leg] = call
            call.legs, call.moved, call.uuid = live, True, live[0]
            return True
        legs.remove(uuid)
        if not legs:
            call.uuid = uuid
            return False
        del calls[uuid]
        if call.uuid == uuid:
            call.uuid = legs[0]
        return True

    def _account_state(self, account: str, now: float) -> AccountState:
        st = self.accounts.get(account)
        if st is None:
            st = self.accounts[account] = AccountState(account, now)
            self._went_idle(st, now)
        return st

    def _went_idle(self, st: AccountState, now: float) -> None:
        """``st`` has no live call any more: queue it to be forgotten (:meth:`prune`)."""
        st.idle_since = now
        if not st.queued:
            st.queued = True
            heapq.heappush(self._idle, (now + ACCOUNT_IDLE, st.account))

    def _uncount(self, call: Call, now: float, record: bool = True) -> None:
        """``call`` leaves its slots (account and class).  ``record``: an answered call's
        minutes up to ``now`` enter the minute budgets' windows (not for a call forgotten
        with its node: a resync may adopt it again)."""
        st = call.acct
        if call.counted and st is not None:
            st.calls.discard(call)
            call.counted = False
            cst = call.cls
            if cst is not None:
                cst.calls.discard(call)
            if record and call.answered is not None:
                self._record_minutes(call, st, call.answered, now)
            if not st.calls:
                self._went_idle(st, now)
            if self.gating and self._gated_account(st, None if cst is None else cst.cls):
                self._regate(st.account, now)  # a slot is free: the dialplan may admit a call

    def _learn_account(self, call: Call, account: str, now: float,
                       ev: CallEventLike | None = None,
                       destination: str | None = None) -> list[Action]:
        """The account of a call followed from its events became known: admission
        (:func:`esl_guard.policy.admit`) by the account's limits, then by its destination
        class's, then the call-rate windows and the slots.  ``ev``: the event that carried the
        account (the call's facts; None after a resync, which gives ``destination``)."""
        st = self._account_state(account, now)
        call.account = st.account
        call.acct = st
        if ev is not None:
            destination = getattr(ev, "destination", None)
        call.destination = destination
        dests = self.destinations
        cls = dests.classify(destination) if dests.classes else None
        if cls is not None and cls in dests.exempt:
            return self._exempt(call, cls)
        limits = self.limits_for(account)
        facts = Admitting(call, ev) if needs_facts(limits) else None
        warnings: list[Verdict] = []
        verdict, inbound = self._admit(st, call, facts, limits, now, warnings)
        vlimits = limits
        watch = limits.max_short_calls is not None
        if cls is not None:
            cst = call.cls = st.class_state(cls)
            climits = dests.limits(account, cls)
            watch = watch or climits.max_short_calls is not None
            if verdict is None:
                cfacts = facts if facts is not None or not needs_facts(climits) \
                    else Admitting(call, ev)
                facts = facts or cfacts
                verdict, cin = self._admit(cst, call, cfacts, climits, now, warnings)
                inbound = inbound or cin
                vlimits = climits
            else:
                self._attempt(cst, climits, verdict, now, None)
        if warnings or verdict is not None:
            facts = facts or Admitting(call, ev)
        actions = ([self._warning(call.account, v, limits, _extra(facts)) for v in warnings]
                   if warnings else [])
        if verdict is not None:
            actions += self._apply(call, verdict, vlimits, now, facts)
            if not limits.dry_run:
                self._regate(st.account, now, limits)  # its attempt may have filled the window
                return tag(call, actions)
            # dry run: the call goes on, so it counts and its duration timer runs
        call.inbound = inbound
        call.watch_end = watch
        self._count(st, call, now)
        return tag(call, actions)

    def _admit(self, st: Usage, call: Call, facts: Admitting | None, limits: Limits,
               now: float, warnings: list[Verdict]) -> tuple[Verdict | None, bool]:
        """Admission of ``call`` by the limits of an account or of its calls to a class
        (``st``), then its windows: (verdict, whether it is a call to the account)."""
        view = self._view(st, call if facts is None else facts)
        if limits.max_minutes is not None:
            view.minutes = self._minutes(st, limits, now)
        inbound = False
        if facts is not None and limits.max_inbound_concurrent_calls is not None:
            inbound = is_inbound(facts.context, limits)
            if inbound:
                view.inbound_live = sum(1 for c in st.calls if c.inbound)
        verdict = admit(view, limits, now, self.wall_clock(), warnings)
        if limits.max_call_rate is None and st.creations is None and st.recent is None \
                and not uses_recent(limits):
            return verdict, inbound  # no window to move (the usual case without limits)
        self._attempt(st, limits, verdict, now, facts)
        return verdict, inbound

    def _attempt(self, st: Usage, limits: Limits, verdict: Verdict | None, now: float,
                 facts: Admitting | None) -> None:
        """A call attempt decided: the detectors' memory and the call-rate window."""
        if uses_recent(limits):
            self._remember(st, facts, limits, verdict, now)
        elif st.recent is not None:
            st.recent = None  # every detector with memory was turned off (a reload)
        rate = limits.max_call_rate
        if rate is None:
            st.creations = None
        elif counts_as_attempt(verdict):
            window = st.creations
            if window is None:
                window = st.creations = []
            _slide(window, now, now - rate.window, rate.count + 1)

    def _remember(self, st: Usage, call: Admitting | None, limits: Limits,
                  verdict: Verdict | None, now: float) -> None:
        """Update the detectors' memory of the account with the call just decided: every
        attempt moves the sequential run (a refused one too, or a dialler would restart its
        run after each refusal); only admitted calls enter the distinct-value windows."""
        recent = st.recent
        if recent is None:
            recent = st.recent = RecentCalls()
        recent.last = now
        if call is None:  # only max_short_calls: nothing to remember at admission
            return
        if limits.max_sequential_destinations is not None and counts_as_attempt(verdict):
            number = call.destination
            recent.run = sequential_run(recent.last_destination, recent.run, number)
            recent.last_destination = number
        if verdict is not None:
            return
        rate = limits.max_distinct_destinations
        if rate is not None:
            _remember_value(recent.destinations, call.destination, now, now - rate.window,
                            rate.count + 1)
        rate = limits.max_source_ips
        if rate is not None:
            _remember_value(recent.source_ips, call.source_ip, now, now - rate.window,
                            rate.count + 1)

    def _end_watched(self, calls: dict[str, Call], call: Call, now: float) -> list[Action]:
        """A call under the short-call detector ended: if it was short (never answered, or up
        less than ``short_call``) it enters the window of its account and of its class (when
        they watch short calls); short call N+1 is a violation.  Calls esl-guard itself ended
        are not counted."""
        answered, doomed, st, cst = call.answered, call.doomed, call.acct, call.cls
        call.watch_end = False
        self._drop(calls, call, now)
        self._remember_end(call.node, call.uuid, now)
        if doomed or st is None or call.account is None:
            return []
        actions: list[Action] = []
        for usage in (st, cst):
            limits = None if usage is None else self._limits_of(usage)
            if usage is None or limits is None:
                continue
            rate = limits.max_short_calls
            if rate is None or not is_short(answered, now, limits):
                continue
            recent = usage.recent
            if recent is None:
                recent = usage.recent = RecentCalls()
            recent.last = now
            _slide(recent.short_calls, now, now - rate.window, rate.count + 1)
            verdict = check_short_call_end(self._view(usage, call), limits, now,
                                           self.wall_clock())
            if verdict is not None:
                actions += self._violation(call.account, verdict, limits, now)
                break  # one violation per call
        return tag(call, actions)

    def _adopt(self, call: Call, account: str, now: float,
               destination: str | None = None) -> list[Action]:
        """A call a resync found up, never seen starting: counted without limit checks,
        unless its account is locked (or its number is exempt: then never counted)."""
        st = self._account_state(account, now)
        call.account = st.name
        call.acct = st
        call.destination = destination
        dests = self.destinations
        cls = dests.classify(destination) if dests.classes else None
        if cls is not None and cls in dests.exempt:
            return self._exempt(call, cls)
        if cls is not None:
            call.cls = st.class_state(cls)
        limits = self.limits_for(account)
        verdict = adopt(self._view(st, call), limits, now, self.wall_clock())
        if verdict is None:
            self._count(st, call, now)
            return []
        actions = self._apply(call, verdict, limits, now)
        if limits.dry_run:  # the call goes on: it counts, and its duration timer runs
            self._count(st, call, now)
        return tag(call, actions)

    def _count(self, st: AccountState, call: Call, now: float) -> None:
        st.calls.add(call)
        call.counted = True
        cst = call.cls
        if cst is not None:
            cst.calls.add(call)
        if call.answered is not None:  # answered before the account was known
            self._arm_duration(call, now)
        if self.gating:
            self._regate(st.account, now)

    def _drop(self, calls: dict[str, Call], call: Call, now: float) -> None:
        del calls[call.uuid]
        if call.account is None:
            self.untracked_ended += 1
        self._uncount(call, now)
        self._disarm(call)
        call.answered = None

    # ------------------------------------------------------------------ verdicts -> actions
    def _apply(self, call: Call, verdict: Verdict, limits: Limits, now: float,
               facts: Admitting | None = None) -> list[Action]:
        """Carry out a verdict on ``call``: a violation (recorded, the call hung up, counted
        toward ``lock_after``), a refusal because of a lock (the call hung up), or a violation
        of a ``warn_only`` rule (a warning; the call is not touched).  In dry run the call goes
        on, so it keeps its slot and its duration timer."""
        assert call.account is not None
        extra = _extra(facts)
        if is_warning(verdict, limits):
            return [self._warning(call.account, verdict, limits, extra)]
        call.doomed = True
        hangup = Action(ActionKind.HANGUP, call.account, verdict.rule, call.node, call.uuid,
                        cause=limits.hangup_cause, limit=verdict.limit, observed=verdict.observed,
                        dry_run=limits.dry_run, detail=verdict.detail, clause=verdict.clause,
                        extra=extra)
        if not verdict.violation:
            return [hangup]
        if not limits.dry_run:  # hung up: the call leaves its slot and its timer
            self._uncount(call, now)
            self._disarm(call)
        actions = self._violation(call.account, verdict, limits, now, extra,
                                  violation_counts_now(limits.dry_run, self.reachable(call.node)))
        actions.insert(1, hangup)
        return actions

    def _violation(self, account: str, verdict: Verdict, limits: Limits, now: float,
                   extra: dict[str, object] | None = None, count: bool = True) -> list[Action]:
        """Record a violation (it counts toward ``lock_after``), or warn under ``warn_only``.
        ``count`` False: its node is unreachable; it counts when its hangup is carried out
        (:meth:`_count_held`)."""
        if is_warning(verdict, limits):
            return [self._warning(account, verdict, limits, extra)]
        actions = [Action(ActionKind.VIOLATION, account, verdict.rule, verdict.node,
                          verdict.uuid, limit=verdict.limit, observed=verdict.observed,
                          dry_run=limits.dry_run, detail=verdict.detail, clause=verdict.clause,
                          extra=dict(extra) if extra else {})]
        trigger = (f"{verdict.node}/{verdict.uuid}/{verdict.rule.value}"
                   if verdict.uuid is not None else "")
        if count:
            actions.extend(self._count_violation(account, verdict.rule, limits, now, trigger))
        else:
            actions[0].extra[_HELD] = True
        return actions

    def _count_held(self, actions: list[Action], now: float) -> list[Action]:
        """The held violations among hangups a resync carries out now count toward
        ``lock_after``; a lock they complete comes after them and their hangups, as it does
        when nothing is held."""
        locks: list[Action] = []
        for a in actions:
            if a.kind is ActionKind.VIOLATION and a.extra.pop(_HELD, False) and a.rule:
                trigger = f"{a.node}/{a.uuid}/{a.rule.value}" if a.uuid is not None else ""
                locks += self._count_violation(a.account, a.rule, self.limits_for(a.account), now,
                                               trigger)
        return actions + locks if locks else actions

    @staticmethod
    def _warning(account: str, verdict: Verdict, limits: Limits,
                 extra: dict[str, object] | None = None) -> Action:
        return Action(ActionKind.WARN, account, verdict.rule, verdict.node, verdict.uuid,
                      limit=verdict.limit, observed=verdict.observed, dry_run=limits.dry_run,
                      detail=verdict.detail + " (warn_only)", clause=verdict.clause,
                      extra=dict(extra) if extra else {})

    def _count_violation(self, account: str, trigger: Rule, limits: Limits,
                         now: float, key: str = "") -> list[Action]:
        after = limits.lock_after
        if after is None:
            return []
        wall = self.wall_clock()
        st = self._account_state(account, now)
        history = self.lock_history.get(account)
        if history:  # forget locks too old to escalate the next one
            while history and history[0] < wall - ESCALATION_WINDOW:
                history.popleft()
        view = self._view(st, None)
        if limits.dry_run:  # a dry run's violations lead to dry-run locks only
            view.violations = st.dry_violations or ()
        verdict = check_lock_after(view, limits, now, wall, trigger)
        if verdict is None:
            if not self.is_locked(account):
                if limits.dry_run:
                    window = st.dry_violations = st.dry_violations or []
                else:
                    window = st.violations = st.violations or []
                _slide(window, now, now - after.window, after.count)
            return []
        spent = st.dry_violations if limits.dry_run else st.violations
        if spent is not None:
            spent.clear()
        if self._windows_reset is not None and not limits.dry_run:
            self._windows_reset.add(account)
        if limits.dry_run:
            return [Action(ActionKind.LOCK, account, Rule.LOCK_AFTER, limit=verdict.limit,
                           observed=verdict.observed, dry_run=True, until=verdict.until,
                           detail=verdict.detail, clause=verdict.clause)]
        lock = Lock(account, self.new_lock_id(account, key), verdict.until, verdict.detail, "auto",
                    pending=True, since=wall)
        self.lock_history.setdefault(account, deque()).append(wall)
        return self._lock(lock, limit=verdict.limit, observed=verdict.observed,
                          clause=verdict.clause)

    # ------------------------------------------------------------------ time
    def _arm_duration(self, call: Call, now: float) -> None:
        """An answered, counted call: its duration timer (the account's or its class's
        ``max_call_duration``, whichever comes first) and the minute budgets it uses."""
        if not call.counted or call.account is None or call.answered is None:
            return
        limits = self.limits_for(call.account)
        deadline = duration_deadline(call.answered, limits)
        cst = call.cls
        if cst is not None:
            climits = self._limits_of(cst)
            if climits is not None:
                other = duration_deadline(call.answered, climits)
                if other is not None and (deadline is None or other < deadline):
                    deadline = other
                if climits.max_minutes is not None:
                    self._arm_budget(cst, now, climits)
        if deadline is not None:
            self._arm_at(call, deadline)
        st = call.acct
        if st is not None and limits.max_minutes is not None:
            self._arm_budget(st, now, limits)

    def _deadline(self, call: Call) -> tuple[float | None, Limits | None]:
        """When ``call`` reaches its ``max_call_duration`` (the earlier of its account's and
        its class's) and the limits that set it."""
        assert call.account is not None
        limits = self.limits_for(call.account)
        deadline = duration_deadline(call.answered, limits)
        cst = call.cls
        if cst is not None:
            climits = self._limits_of(cst)
            other = None if climits is None else duration_deadline(call.answered, climits)
            if other is not None and (deadline is None or other < deadline):
                return other, climits
        return deadline, limits if deadline is not None else None

    def _arm_at(self, call: Call, deadline: float) -> None:
        self._timers.arm(call, deadline)

    @staticmethod
    def _disarm(node: TimerNode) -> None:
        disarm(node)

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._idle and self._idle[0][0] <= now:
            self.prune(now)
        else:
            self._forget_ended(now)
        for ring in self._timers.due(now):
            for call in ring:
                actions.extend(self._expire(call, now))
        for usages in self._budgets.due(now):
            for usage in usages:
                actions.extend(self._budget_due(usage, now))
        if self._gate_timers and self._gate_timers[0][0] <= now:
            self._reopen_gates(now)
        if self._regate_soon:
            for account in sorted(self._regate_soon):
                self._regate(account, now)
            self._regate_soon.clear()
        wall = self.wall_clock()
        lock_timers = self._lock_timers
        while lock_timers and lock_timers[0][0] <= wall:
            _, account, lock_id = heapq.heappop(lock_timers)
            lock = self.locks.get(account)
            if lock is None or lock.lock_id != lock_id:
                continue  # that lock already ended; a newer one has its own timer
            if check_lock_expiry(AccountView(account, lock=lock), self.limits_for(account),
                                 now, wall) is not None:
                actions.extend(self.release_lock(account, "expiry", lock_id))
        return actions

    def _expire(self, call: Call, now: float) -> list[Action]:
        if not call.counted or call.answered is None or call.account is None:
            return []
        deadline, limits = self._deadline(call)
        if deadline is None or limits is None:
            return []
        verdict = check_duration(self.view(call.account, call), limits, now, self.wall_clock())
        if verdict is None:  # the limit was raised by a reload, or the slot fired early
            self._arm_at(call, deadline)
            return []
        return tag(call, self._apply(call, verdict, limits, now))

    def retime(self, now: float) -> list[Action]:
        """Apply a new policy (a reload) to the calls up: re-arm every duration timer, and
        enforce on the calls a dry run let go on (they count already): a call over its new
        duration limit is hung up at the next tick, a call of a locked account now.  While
        still in dry run, a call whose dry-run hangup was reported is not reported again."""
        actions: list[Action] = []
        wall = self.wall_clock()
        for st in self.accounts.values():  # budgets are armed again with their calls
            for usage in st.usages():
                disarm(usage)
                usage.budget_at = None
        for calls in self.nodes.values():
            for call in calls.values():
                if call is B_LEG:
                    continue
                self._disarm(call)
                if not call.counted or call.account is None:
                    continue
                limits = self.limits_for(call.account)
                if limits.dry_run:
                    deadline = duration_deadline(call.answered, limits)
                    if call.doomed and deadline is not None and deadline <= now:
                        continue
                elif lock_active(self.locks.get(call.account), wall):
                    actions.append(self._refuse_locked(call, limits))
                    continue
                self._arm_duration(call, now)
        self.regate_all(now)
        return actions

    def timers_armed(self) -> int:
        """Calls waiting for a duration deadline (walks the timers: for tests and tools)."""
        return self._timers.armed()

    def _forget_ended(self, now: float) -> None:
        """Forget ends older than ``ended_memory`` (oldest first: only those are visited)."""
        horizon = now - self.ended_memory
        for ended in self.ended.values():
            while ended:
                uuid, when = ended.popitem(last=False)
                if when > horizon:  # too recent: back in front, and no older one behind it
                    ended[uuid] = when
                    ended.move_to_end(uuid, last=False)
                    break

    def prune(self, now: float, budget: int = 10_000) -> int:
        """Forget accounts without live calls whose time has come (policy.calls.release_at),
        and ends older than ``ended_memory``.  Incremental: it visits only due entries of the
        idle queue (at most ``budget``), never every account.  Returns how many accounts."""
        self._forget_ended(now)
        idle = self._idle
        dropped = 0
        while idle and idle[0][0] <= now and budget > 0:
            budget -= 1
            _, name = heapq.heappop(idle)
            st = self.accounts.get(name)
            if st is None or not st.queued:
                continue
            st.queued = False
            if st.calls:
                continue  # queued again when its last call ends
            at = release_at(st.idle_since, st.creations or (), st.violations or (),
                            self.limits_for(name),
                            None if st.recent is None else st.recent.last)
            if st.classes or st.minutes is not None:
                at = max(at, self._classes_kept(st))
            if at > now:
                st.queued = True
                heapq.heappush(idle, (at, name))
                continue
            for usage in st.usages():
                disarm(usage)
            del self.accounts[name]
            dropped += 1
        return dropped


def _extra(facts: Admitting | None) -> dict[str, object]:
    """The call's dialled number for an action (notifications), when its event is at hand."""
    destination = None if facts is None else facts.destination
    return {"destination": destination} if destination else {}


def _remember_value(seen: dict[str, float], value: str | None, now: float, horizon: float,
                    keep: int) -> None:
    """Note ``value`` as seen at ``now`` (newest last), forget values last seen at or before
    ``horizon`` and all but the newest ``keep``."""
    if not value:
        return
    if seen.pop(value, None) is not None and not seen:  # the only value: no trimming to do
        seen[value] = now
        return
    seen[value] = now
    while seen:
        oldest = next(iter(seen))
        if seen[oldest] > horizon and len(seen) <= keep:
            break
        del seen[oldest]


def _slide(window: list[float], now: float, horizon: float, keep: int) -> int:
    """Add ``now`` to a sliding window, drop entries at or before ``horizon`` and all but the
    newest ``keep``; return how many remain (never more than ``keep``)."""
    if window and window[0] <= horizon:
        del window[:bisect.bisect_right(window, horizon)]
    window.append(now)
    if len(window) > keep:
        del window[:len(window) - keep]
    return len(window)
