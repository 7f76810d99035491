"""``max_minutes = N/W`` (issue 12): the answered minutes of an account's calls (or of its calls
to a destination class) within a sliding window of ``W`` seconds, live calls included, never
exceed N.

The minutes in the window at ``now`` are the parts of answered intervals that fall in
``(now - W, now]``: an ended call answered at ``a`` and ended at ``e`` counts
``min(e, now) - max(a, now - W)`` seconds (none once ``e <= now - W``), a live call answered at
``a`` counts ``now - max(a, now - W)``.  While that reaches ``N`` minutes, new calls are refused
(:func:`check_minutes`); the live calls are hung up when it reaches ``N``
(:func:`minutes_deadline` says when to look again).

:class:`MinuteWindow` holds the ended intervals (the tracker owns it and moves it forward with
:meth:`MinuteWindow.advance`); the rules only read numbers.  Times are monotonic.
"""
from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable

from esl_guard.model import Limits, Rate, Rule, clause_of, format_duration
from esl_guard.policy.verdict import AccountView, Verdict

#: seconds of slack when comparing with the budget (float sums, timer slots)
EPSILON = 1e-6
#: a deadline is never armed sooner than this after ``now`` (many live calls, tiny remainder)
MIN_STEP = 0.05


class MinuteWindow:
    """The answered intervals ``(answered, ended)`` of ended calls still (partly) inside the
    window, with running sums so :meth:`used` is O(1) after :meth:`advance` (amortised
    O(log n) per interval).  An interval whose start has left the window "crosses" it: it
    counts ``ended - horizon``."""

    __slots__ = ("_by_end", "_by_start", "_total", "_cross_n", "_cross_sum", "horizon",
                 "_seq", "last_end")

    def __init__(self, intervals: Iterable[tuple[float, float]] = (),
                 horizon: float = float("-inf")) -> None:
        self._by_end: deque[list[float]] = deque()   # [answered, ended, crossing], by end
        self._by_start: list[tuple[float, int, list[float]]] = []
        self._total = 0.0       # sum of (ended - answered) of every interval held
        self._cross_n = 0       # intervals crossing the window's start
        self._cross_sum = 0.0   # sum of their starts
        self.horizon = horizon
        self._seq = itertools.count()
        self.last_end: float | None = None  # the newest end held (memory release)
        for a, e in sorted(intervals, key=lambda ae: ae[1]):
            self.add(a, e)

    def __len__(self) -> int:
        return len(self._by_end)

    def intervals(self) -> list[tuple[float, float]]:
        return [(a, e) for a, e, _ in self._by_end]

    def add(self, answered: float, ended: float) -> None:
        """An answered call ended (``ended`` not older than the newest end held, except when
        restoring, which rebuilds)."""
        if ended <= answered or ended <= self.horizon:
            return
        if self._by_end and ended < self._by_end[-1][1]:  # out of order: rebuild, sorted
            self._rebuild([*self.intervals(), (answered, ended)])
            return
        item = [answered, ended, 0.0]
        self._by_end.append(item)
        self._total += ended - answered
        self.last_end = ended
        if answered <= self.horizon:
            item[2] = 1.0
            self._cross_n += 1
            self._cross_sum += answered
        else:
            heapq.heappush(self._by_start, (answered, next(self._seq), item))

    def advance(self, horizon: float) -> None:
        """Move the window's start to ``horizon`` (``now - W``): intervals that ended at or
        before it leave, those whose start it passed cross it."""
        if horizon < self.horizon:  # the window grew (a reload): recount what is held
            self.horizon = horizon
            self._rebuild(self.intervals())
            return
        self.horizon = horizon
        starts = self._by_start
        while starts and starts[0][0] <= horizon:
            item = heapq.heappop(starts)[2]
            item[2] = 1.0
            self._cross_n += 1
            self._cross_sum += item[0]
        ends = self._by_end
        while ends and ends[0][1] <= horizon:
            a, e, crossing = ends.popleft()
            self._total -= e - a
            if crossing:
                self._cross_n -= 1
                self._cross_sum -= a
        if not ends:
            self._total = self._cross_sum = 0.0
            self._cross_n = 0
            self._by_start.clear()

    def used(self) -> float:
        """Seconds of ended calls inside the window (as of the last :meth:`advance`)."""
        return max(0.0, self._total - (self._cross_n * self.horizon - self._cross_sum))

    def _rebuild(self, intervals: list[tuple[float, float]]) -> None:
        horizon = self.horizon
        self.__init__(horizon=horizon)  # type: ignore[misc]
        for a, e in sorted(intervals, key=lambda ae: ae[1]):
            self.add(a, e)


def live_seconds(answered: Iterable[float], now: float, horizon: float) -> float:
    """Seconds of live calls (answered at the given times) inside the window ``(horizon,
    now]``."""
    return sum(now - (a if a > horizon else horizon) for a in answered if a < now)


def budget(rate: Rate) -> float:
    """The budget of ``max_minutes`` in seconds."""
    return rate.count * 60.0


def minutes_deadline(used: float, live: int, limits: Limits, now: float) -> float | None:
    """When to look again at a budget whose window holds ``used`` seconds at ``now`` with
    ``live`` answered calls up: the earliest moment they could bring it to N (the ended
    minutes only leave the window, so the real moment is never earlier).  None: no limit, or
    no answered call up."""
    rate = limits.max_minutes
    if rate is None or live <= 0:
        return None
    remaining = budget(rate) - used
    return now + max(MIN_STEP, remaining / live) if remaining > EPSILON else now


def over_budget(used: float, limits: Limits) -> bool:
    """The window holds the whole budget (or more)."""
    rate = limits.max_minutes
    return rate is not None and used >= budget(rate) - EPSILON


def _observed(used: float, rate: Rate) -> str:
    minutes = used / 60.0
    shown = f"{minutes:.1f}".rstrip("0").rstrip(".")
    return f"{shown}/{format_duration(rate.window)}"


def check_minutes(view: AccountView, limits: Limits, now: float, wall: float) -> Verdict | None:
    """``max_minutes = N/W``: the window already holds N answered minutes (``view.minutes``,
    seconds, live calls included): a new call is refused, a live call (``view.call``) is hung
    up."""
    rate = limits.max_minutes
    if rate is None or not over_budget(view.minutes, limits):
        return None
    call = view.call
    observed = _observed(view.minutes, rate)
    what = " (answered minutes in the window)"
    return Verdict(Rule.MINUTES, clause_of(Rule.MINUTES), limit=str(rate), observed=observed,
                   uuid=None if call is None else call.uuid,
                   node=None if call is None else call.node,
                   detail=f"{Rule.MINUTES.value} {observed} over limit {rate}{what}")
