"""max_minutes (issue 12): the window of answered minutes, its rule and its deadline, with
explicit clocks."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esl_guard.model import Limits, Rate, Rule
from esl_guard.policy import (
    AccountView,
    CallInfo,
    MinuteWindow,
    check_minutes,
    live_seconds,
    minutes_deadline,
    next_call_blocked,
)

LIM = Limits(max_minutes=Rate(30, 3600.0))  # 30 minutes per hour


def brute(intervals: list[tuple[float, float]], now: float, window: float) -> float:
    h = now - window
    return sum(max(0.0, min(e, now) - max(a, h)) for a, e in intervals)


def test_an_interval_counts_only_its_part_inside_the_window() -> None:
    w = MinuteWindow()
    w.add(0.0, 600.0)       # 10 min
    w.add(1000.0, 1300.0)   # 5 min
    w.advance(3600.0 - 3600.0)
    assert w.used() == 900.0
    w.advance(3900.0 - 3600.0)  # the window starts at 300: half of the first call left
    assert w.used() == 600.0
    w.advance(4200.0 - 3600.0)  # starts at 600: the first call ended exactly there, it left
    assert w.used() == 300.0 and len(w) == 1
    w.advance(4900.0 - 3600.0)
    assert w.used() == 0.0 and len(w) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 2000)), max_size=25),
       st.lists(st.integers(0, 8000), min_size=1, max_size=10), st.integers(60, 4000))
def test_window_matches_a_brute_force_model(calls: list[tuple[int, int]], nows: list[int],
                                            window: int) -> None:
    intervals = sorted(((float(a), float(a + d)) for a, d in calls), key=lambda ae: ae[1])
    w = MinuteWindow()
    added = []
    for now in sorted(nows):
        while intervals and intervals[0][1] <= now:
            added.append(intervals.pop(0))
            w.add(*added[-1])
        w.advance(now - window)
        assert w.used() == pytest.approx(brute(added, now, window), abs=1e-6)


def test_restoring_out_of_order_and_a_longer_window() -> None:
    w = MinuteWindow([(100.0, 200.0), (0.0, 50.0)])
    w.add(10.0, 20.0)  # ended before the newest end: rebuilt, sorted
    assert sorted(w.intervals()) == [(0.0, 50.0), (10.0, 20.0), (100.0, 200.0)]
    w.advance(150.0)
    assert w.used() == 50.0
    w.advance(0.0)  # the window grew (a reload): what is still held counts again
    assert w.used() == 100.0


def test_live_seconds_clip_at_the_window_start() -> None:
    assert live_seconds([100.0, 3000.0, 5000.0], now=4000.0, horizon=400.0) == 3600.0 + 1000.0


def view(minutes: float, call: CallInfo | None = None) -> AccountView:
    return AccountView("acme", minutes=minutes, call=call)


@pytest.mark.parametrize(("used", "refused"), [
    (0.0, False), (1799.0, False), (1800.0 - 1e-7, True), (1800.0, True), (2000.0, True)])
def test_check_minutes_refuses_at_n_minutes(used: float, refused: bool) -> None:
    v = check_minutes(view(used), LIM, 0.0, 0.0)
    assert (v is not None) is refused
    if v is not None:
        assert (v.rule, v.clause, v.limit) == (Rule.MINUTES, "network_use", "30/1h")


def test_check_minutes_names_the_live_call_and_is_off_without_a_limit() -> None:
    v = check_minutes(view(1800.0, CallInfo("u1", "fs1")), LIM, 0.0, 0.0)
    assert v is not None and (v.uuid, v.node, v.observed) == ("u1", "fs1", "30/1h")
    assert check_minutes(view(10**9), Limits(), 0.0, 0.0) is None


@pytest.mark.parametrize(("used", "live", "expected"), [
    (0.0, 1, 1800.0),      # one call alone reaches 30 min after 30 min
    (1200.0, 2, 300.0),    # 10 min left, two calls: 5 min
    (1800.0, 1, 0.0),      # already full: now
    (1799.99, 1, 0.05),    # never sooner than MIN_STEP after now
    (0.0, 0, None),        # no answered call up: nothing will fill it
])
def test_minutes_deadline(used: float, live: int, expected: float | None) -> None:
    at = minutes_deadline(used, live, LIM, 100.0)
    assert (None if at is None else round(at - 100.0, 6)) == expected


def test_next_call_blocked_says_why_and_ignores_warnings() -> None:
    assert next_call_blocked(view(1800.0), LIM, 0.0, 0.0).rule is Rule.MINUTES
    assert next_call_blocked(view(0.0), LIM, 0.0, 0.0) is None
    warn = Limits(max_minutes=Rate(30, 3600.0), warn_only=frozenset({"max_minutes"}))
    assert next_call_blocked(view(1800.0), warn, 0.0, 0.0) is None
    full = AccountView("acme", live=1)
    assert next_call_blocked(full, Limits(max_concurrent_calls=1), 0.0, 0.0).rule is \
        Rule.CONCURRENCY
