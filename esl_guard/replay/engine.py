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
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from esl_guard.config import Config
from esl_guard.model import Action, ActionKind, clause_of
from esl_guard.replay.cdr import Call
from esl_guard.tracker import TIMER_SLOTS_PER_SECOND, CallEventLike, Tracker

CREATE, ANSWER, END = "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"
CDR_NODE = "cdr"  # the node of every CDR call
BLEG_HORIZON = 3600.0  # a B-leg row starts within this of its A-leg
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


@dataclass
class Omitted:
    """Events a CDR timeline left out (:func:`cdr_events`), still counted as replayed."""

    answers: int = 0


#: An event of a CDR timeline: a CdrEvent, or the uuid alone of a call that ends.
CdrTimed = tuple[float, "CdrEvent | str"]


def cdr_events(calls: Iterable[Call], unanswered_within: float = -math.inf,
               omitted: Omitted | None = None) -> Iterator[CdrTimed]:
    """Calls in start order -> (time, event) in time order, on node :data:`CDR_NODE`.  At one
    instant, the answers and ends already due come before new calls (a slot freed at 12:00:00
    is free for a call made at 12:00:00), in the order their calls started.  Memory: the
    answers and ends of the calls that are up, grouped by instant (a heap of distinct times,
    a list per time: CDR stamps repeat a lot, and floats compare faster than tuples).

    An end is given as the call's uuid alone (a str, not an event: the tracker needs nothing
    else, :meth:`Engine.run`).  Rows whose uuid an earlier row names as its ``bleg_uuid``
    (mod_cdr_csv with ``legs = ab``) are B-legs: the outbound leg of a bridge is not a call of
    its own (rows naming a B-leg sort first within a start second; names are forgotten after
    BLEG_HORIZON).  ``unanswered_within``: a call answered for at most this long gets no
    CHANNEL_ANSWER (:attr:`Engine.answer_matters_after`: when no rule can tell the
    difference), counted in ``omitted``."""
    node = CDR_NODE
    left_out = 0
    times: list[float] = []
    due: dict[float, list[CdrEvent | str]] = {}
    push, pop = heapq.heappush, heapq.heappop
    blegs: dict[str, float] = {}
    named: deque[tuple[float, str]] = deque()
    for start, _, uuid, _, account, answer, end, bleg, b_leg, number in calls:
        while times and times[0] <= start:
            t = pop(times)
            for ev in due.pop(t):
                yield t, ev
        while named and named[0][0] < start - BLEG_HORIZON:
            at, name = named.popleft()
            if blegs.get(name) == at:  # not named again since
                del blegs[name]
        if blegs and uuid in blegs:
            del blegs[uuid]
            b_leg = True
        if bleg:
            blegs[bleg] = start
            named.append((start, bleg))
        yield start, CdrEvent(CREATE, node, uuid, account, b_leg, None, number)
        if answer is not None and end - answer <= unanswered_within:
            left_out += 1
        elif answer is not None:
            answered = CdrEvent(ANSWER, node, uuid, account, b_leg, end, number)
            if answer == start:  # nothing can come between: no need to queue it
                yield start, answered
            elif answer in due:
                due[answer].append(answered)
            else:
                due[answer] = [answered]
                push(times, answer)
        if end in due:
            due[end].append(uuid)
        else:
            due[end] = [uuid]
            push(times, end)
    while times:
        t = pop(times)
        for ev in due.pop(t):
            yield t, ev
    if omitted is not None:
        omitted.answers += left_out


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
        self.tracker = Tracker(config.limits_for, self._wall, dests, gating=False)
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
        #: How long a call may be answered before its answer can change a decision.  A
        #: call's answer time is read by its duration timer, by the minute budgets and by the
        #: short-call detector only: without the last two, the answer of a call that ends
        #: before the shortest max_call_duration changes nothing (its timer would be disarmed
        #: by its end before it could fire), and its CHANNEL_ANSWER is left out of the
        #: timeline (a third of a CDR's events).  -inf: every answer matters.
        short = any(x.max_short_calls is not None for x in limits)
        self.answer_matters_after = -math.inf if self._budgets or short else self._shortest_limit
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
    def apply(self, t: float, ev: CallEventLike | str, catch_up: bool = False) -> None:
        """Apply one recorded event.  ``catch_up``: also tick at ``t`` afterwards, for raw
        captures where an account may first appear on a later event than the answer."""
        stats = self.stats
        if isinstance(ev, str):  # a CDR call's end (cdr_events)
            ev = CdrEvent(END, CDR_NODE, ev, None, False)
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

    def run(self, events: Iterable[CdrTimed]) -> None:
        """``apply`` for every event of a CDR timeline (:func:`cdr_events`): the same steps,
        with the lookups hoisted out of the loop (the replay's hot path).  Each event first
        goes through ``Tracker.known_event``, as in the daemon (an end, the answer of a known
        call: nothing else to read)."""
        stats = self.stats
        known = self.tracker.known_event
        on_unknown = self.tracker.on_unknown_event
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
            if type(ev) is str:  # an end: the call's uuid
                if known(CDR_NODE, END, ev, now):
                    continue
                ev = CdrEvent(END, CDR_NODE, ev, None, False)
            assert type(ev) is CdrEvent
            name = ev.name
            if name == CREATE and not ev.b_leg:
                calls += 1
            if not known(CDR_NODE, name, ev.uuid, now):
                actions = on_unknown(ev, now)
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
