"""The replay engine: recorded events -> the daemon's Tracker, on the recorded clock.

``now`` and the wall clock are both the recorded time.  Time only moves forward; before it moves
past a moment at which a duration limit or a lock expiry falls due, ``Tracker.tick`` is called
at that exact moment (rounded up to the tracker's timer resolution, as in the daemon), so a
call over ``max_call_duration`` is cut at ``answer + limit`` and not at the next recorded event.
Events recorded at the same instant as a timer are applied first: a call whose recorded length
equals the limit has not exceeded it.

Minute budgets (``max_minutes``) fall due on the tracker's budget wheel: when a budget is
configured, the engine follows the wheel's earliest slot after every answer and every tick and
ticks at it, so a call that takes an account's minutes to N is cut at that second.  Without a
budget this costs nothing.

CDR calls become the events the tracker needs: CHANNEL_CREATE at start (with the account and the
dialled number, so destination classes apply as in the daemon), CHANNEL_ANSWER at answer if
answered, CHANNEL_HANGUP_COMPLETE at end.  Calls arrive in start
order; answers and ends wait in a heap, so memory follows the calls that are up.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from esl_guard.config import Config
from esl_guard.model import Action, ActionKind, clause_of
from esl_guard.replay.cdr import Call
from esl_guard.tracker import TIMER_SLOTS_PER_SECOND, CallEventLike, Tracker

CREATE, ANSWER, END = "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"
DRAIN_EVERY = 300.0  # recorded seconds between two ticks that only tidy the tracker's timers

Timed = tuple[float, CallEventLike]


@dataclass(slots=True)
class Decision:
    """One action of the policy, as the daemon would audit it."""

    time: float
    action: Action

    @property
    def clause(self) -> str | None:
        return self.action.clause or clause_of(self.action.rule)


def slot_time(deadline: float) -> float:
    """The first moment at which ``Tracker.tick`` fires a timer due at ``deadline``."""
    key = math.ceil(deadline * TIMER_SLOTS_PER_SECOND - 1e-9)
    t = key / TIMER_SLOTS_PER_SECOND
    while int(t * TIMER_SLOTS_PER_SECOND) < key:
        t = math.nextafter(t, math.inf)
    return max(t, deadline)


class CdrEvent:
    """A call event made from a CDR: the fields of :class:`esl_guard.model.CallEvent` (the
    tracker's ``CallEventLike``), in a plain slotted class: a frozen dataclass costs ~6 us to
    build, three per CDR row."""

    __slots__ = ("name", "node", "uuid", "account", "b_leg", "hangup_at", "destination")

    def __init__(self, name: str, node: str, uuid: str, account: str | None,
                 b_leg: bool, hangup_at: float | None = None,
                 destination: str | None = None) -> None:
        self.name = name
        self.node = node
        self.uuid = uuid
        self.account = account
        self.b_leg = b_leg
        self.hangup_at = hangup_at  # ANSWER: when the recorded call ended
        self.destination = destination  # the dialled number (destination_number)


def cdr_events(calls: Iterable[Call], node: str) -> Iterator[Timed]:
    """Calls in start order -> (time, event) in time order.  At one instant, the answers and
    ends already due come before new calls (a slot freed at 12:00:00 is free for a call made
    at 12:00:00), in the order their calls started.  Memory: the answers and ends of the calls
    that are up, grouped by instant (a heap of distinct times, a list per time: CDR stamps
    repeat a lot, and floats compare faster than tuples)."""
    times: list[float] = []
    due: dict[float, list[CdrEvent]] = {}
    push, pop = heapq.heappush, heapq.heappop
    for start, _, uuid, _, account, answer, end, _, b_leg, number in calls:
        while times and times[0] <= start:
            t = pop(times)
            for ev in due.pop(t):
                yield t, ev
        yield start, CdrEvent(CREATE, node, uuid, account, b_leg, None, number)
        if answer is not None:
            answered = CdrEvent(ANSWER, node, uuid, account, b_leg, end, number)
            if answer == start:  # nothing can come between: no need to queue it
                yield start, answered
            elif answer in due:
                due[answer].append(answered)
            else:
                due[answer] = [answered]
                push(times, answer)
        ended = CdrEvent(END, node, uuid, account, b_leg)
        if end in due:
            due[end].append(ended)
        else:
            due[end] = [ended]
            push(times, end)
    while times:
        t = pop(times)
        for ev in due.pop(t):
            yield t, ev


@dataclass
class Stats:
    events: int = 0
    calls: int = 0
    first: float | None = None
    last: float | None = None
    hung_up: set[str] = field(default_factory=set)      # calls the policy would hang up
    locked: set[str] = field(default_factory=set)       # accounts it would lock
    dry_hung_up: set[str] = field(default_factory=set)  # the same under dry_run (logged only)
    dry_locked: set[str] = field(default_factory=set)
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)


class Engine:
    """One policy over one recorded timeline.  ``on_decision`` receives every decision as it
    is taken (in time order)."""

    def __init__(self, config: Config, on_decision: Callable[[Decision], None]) -> None:
        self.config = config
        self.now = float("-inf")
        dests = config.destinations
        self.tracker = Tracker(config.limits_for, self._wall, dests)
        self.on_decision = on_decision
        self.stats = Stats()
        self._timers: list[float] = []
        limits = [config.policy, *config.accounts.values()]
        limits += [dests.limits(a, c) for c in dests.classes if c not in dests.exempt
                   for a in ("", *config.accounts)]  # "": an account without a section
        durations = [x.max_call_duration for x in limits if x.max_call_duration is not None]
        #: No account's duration limit is shorter: a recorded call ending sooner needs no tick.
        self._shortest_limit = min(durations, default=math.inf)
        #: Some max_minutes is configured: the budget wheel is followed (:meth:`_follow_budgets`).
        self._budgets = any(x.max_minutes is not None for x in limits)
        self._budget_slot: int | None = None  # the budget wheel's slot last scheduled
        self._drain_at = -math.inf

    def _wall(self) -> float:
        return self.now

    # ------------------------------------------------------------------ time
    def _advance(self, t: float) -> None:
        """Fire every timer due strictly before ``t``, each at its own moment."""
        timers = self._timers
        pop = heapq.heappop
        while timers and timers[0] < t:
            at = pop(timers)
            while timers and timers[0] <= at:
                pop(timers)
            if at > self.now:
                self.now = at
            actions = self.tracker.tick(self.now)
            if actions:
                self._decide(actions)
            if self._budgets:
                self._budget_slot = None  # that slot fired: follow the wheel again
                self._follow_budgets()

    def _drain(self, t: float) -> None:
        """Time moves on to ``t``: every DRAIN_EVERY recorded seconds, tick at the moment just
        passed, as the daemon's ticker does.  Nothing is due then (every known deadline fired at
        its own moment), but the tracker drops the timer buckets of calls that ended: without
        it they would pile up for the whole recording when no call ever reaches its limit.
        (Each tick that finds something due costs O(armed buckets) in the tracker, so not
        every second.)"""
        self._drain_at = t + DRAIN_EVERY
        self.tracker.gate_changes.clear()  # the daemon pushes them into FreeSWITCH; no one here
        if self.now > -math.inf:
            actions = self.tracker.tick(self.now)
            if actions:
                self._decide(actions)
            if self._budgets:
                self._follow_budgets()

    def finish(self) -> None:
        """The end of the recording: fire what falls due up to its last moment, no later."""
        if self.stats.last is not None:
            self._advance(math.nextafter(self.stats.last, math.inf))

    # ------------------------------------------------------------------ events
    def apply(self, t: float, ev: CallEventLike, catch_up: bool = False) -> None:
        """Apply one recorded event.  ``catch_up``: also tick at ``t`` afterwards, for raw
        captures where an account may first appear on a later event than the answer."""
        stats = self.stats
        if t > self.now:
            if self._timers and self._timers[0] < t:
                self._advance(t)
            if t >= self._drain_at:
                self._drain(t)
            self.now = t
            stats.last = t
            if stats.first is None:
                stats.first = t
        stats.events += 1
        name = ev.name
        if name == CREATE and not ev.b_leg:
            stats.calls += 1
        actions = self.tracker.on_event(ev, self.now)
        if actions:
            self._decide(actions)
        if name == ANSWER:
            self._arm(ev)
        if catch_up:
            actions = self.tracker.tick(self.now)
            if actions:
                self._decide(actions)
        if self._budgets:  # an account learned late may have armed a budget
            self._follow_budgets()

    def run(self, events: Iterable[Timed]) -> None:
        """``apply`` for every event of a CDR timeline: the same steps, with the lookups
        hoisted out of the loop (the replay's hot path)."""
        stats = self.stats
        on_event = self.tracker.on_event
        timers = self._timers
        decide, arm = self._decide, self._arm
        now = self.now
        calls = events_n = 0
        for t, ev in events:
            if t > now:
                if timers and timers[0] < t:
                    self._advance(t)
                if t >= self._drain_at:
                    self._drain(t)
                self.now = now = t
                if stats.first is None:
                    stats.first = t
            events_n += 1
            name = ev.name
            if name == CREATE and not ev.b_leg:
                calls += 1
            actions = on_event(ev, now)
            if actions:
                decide(actions)
            if name == ANSWER:
                arm(ev)
        stats.calls += calls
        stats.events += events_n
        if now > float("-inf"):
            stats.last = now

    def _arm(self, ev: CallEventLike) -> None:
        """A call was answered: the moment its duration limit (its account's or its
        destination class's, the earlier) falls due is a moment to tick at, unless the
        recording shows it ended first; and the budget wheel may have a new earliest slot."""
        if self._budgets:
            self._follow_budgets()
        end = ev.hangup_at if isinstance(ev, CdrEvent) else None
        if end is not None and end - self.now <= self._shortest_limit:
            return
        account = ev.account
        if not account:
            return
        limit = self.config.limits_for(account).max_call_duration
        dests = self.config.destinations
        if dests.classes:
            cls = dests.classify(getattr(ev, "destination", None))
            if cls in dests.exempt:
                return  # never counted, never timed
            other = None if cls is None else dests.limits(account, cls).max_call_duration
            if other is not None and (limit is None or other < limit):
                limit = other
        if limit is None:
            return
        due = slot_time(self.now + limit)
        if end is None or end > due:
            heapq.heappush(self._timers, due)

    def _follow_budgets(self) -> None:
        """Schedule a tick at the earliest slot of the tracker's budget wheel (``max_minutes``
        deadlines, armed and re-armed by the tracker itself), once per slot; a slot already
        due is taken at the next tick, as the daemon's ticker would.  Read from the wheel: a
        budget's deadline depends on every answered call of the account and of its class,
        and the tracker alone keeps them."""
        slot = self.tracker._budgets._next_slot  # read only
        if slot is None or slot == self._budget_slot:
            return
        self._budget_slot = slot
        at = slot_time(slot / TIMER_SLOTS_PER_SECOND)
        if at <= self.now:
            at = slot_time((int(self.now * TIMER_SLOTS_PER_SECOND) + 1) / TIMER_SLOTS_PER_SECOND)
        heapq.heappush(self._timers, at)

    def _decide(self, actions: list[Action]) -> None:
        stats = self.stats
        for action in actions:
            kind = action.kind
            if kind is ActionKind.HANGUP and action.uuid:
                (stats.dry_hung_up if action.dry_run else stats.hung_up).add(action.uuid)
            elif kind is ActionKind.LOCK:
                (stats.dry_locked if action.dry_run else stats.locked).add(action.account)
                if action.until is not None and not action.dry_run:
                    heapq.heappush(self._timers, action.until)
            stats.by_rule[(action.rule.value if action.rule else "-", kind.value)] += 1
            self.on_decision(Decision(self.now, action))
