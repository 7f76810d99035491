"""The admission gate of destination classes and minute budgets (issue 12, sections 1-3): an
account's next call to a class over the class's limit, and its next call while its minute
budget is used up, are refused by the dialplan (keys ``ACCOUNT:CLASS`` and ``ACCOUNT``),
exactly until that is no longer so.  Explicit clocks."""
from __future__ import annotations

import pytest

from esl_guard.model import CallEvent, Limits, Rate, Rule
from esl_guard.policy import Destinations
from esl_guard.policy.destinations import DestinationClass
from esl_guard.policy.gate import Gate, minutes_reopen
from esl_guard.tracker import Tracker

WALL = 1_800_000_000.0
U = [f"00000000-0000-4000-8000-{i:012d}" for i in range(12)]


@pytest.mark.parametrize(("ended", "window", "seconds", "now", "reopens"), [
    ([], 3600.0, 60.0, 100.0, 100.0),                       # nothing held: open now
    ([(0.0, 60.0)], 3600.0, 60.0, 100.0, 3600.0),           # leaves from h = 0 on, slope 1
    ([(0.0, 30.0), (40.0, 70.0)], 3600.0, 60.0, 100.0, 3600.0),
    ([(0.0, 30.0), (40.0, 70.0)], 3600.0, 50.0, 100.0, 3610.0),  # 10 s of the first left
    ([(0.0, 120.0)], 3600.0, 60.0, 100.0, 3660.0),          # half of a long call must leave
    ([(0.0, 60.0)], 3600.0, 120.0, 100.0, 100.0),           # under the budget already
])
def test_minutes_reopen(ended: list[tuple[float, float]], window: float, seconds: float,
                        now: float, reopens: float) -> None:
    assert minutes_reopen(ended, window, seconds, now) == pytest.approx(reopens, abs=1e-3)


def tracker(dests: Destinations | None = None, **limits: object) -> Tracker:
    policy = {"acme": Limits(**limits)}  # type: ignore[arg-type]
    return Tracker(lambda a: policy.get(a, Limits()), lambda: WALL, dests)


def start(tr: Tracker, i: int, now: float, dest: str = "9001") -> list:
    ev = CallEvent("CHANNEL_CREATE", "fs1", U[i], "acme", destination=dest)
    return tr.on_event(ev, now)


def end(tr: Tracker, i: int, now: float) -> None:
    tr.on_event(CallEvent("CHANNEL_HANGUP", "fs1", U[i], "acme"), now)


def premium(account: Limits, **values: object) -> Destinations:
    return Destinations([DestinationClass("premium", ("1900",), values=values)], account)


def test_a_class_at_its_limit_gates_the_account_s_next_call_to_it_only() -> None:
    tr = tracker(premium(Limits(max_concurrent_calls=5), max_concurrent_calls=1),
                 max_concurrent_calls=5)
    start(tr, 0, 1.0, dest="9001")
    assert tr.take_gate_changes() == [] and not tr.gates
    start(tr, 1, 2.0, dest="+19005550100")
    assert tr.take_gate_changes() == ["acme:premium"]
    assert tr.gates == {"acme:premium": Gate("busy", Rule.CONCURRENCY)}  # not "acme"
    end(tr, 0, 3.0)  # the plain call's end: the class stays busy
    assert tr.take_gate_changes() == [] and "acme:premium" in tr.gates
    end(tr, 1, 4.0)  # the premium call's end opens it at once
    assert tr.take_gate_changes() == ["acme:premium"] and not tr.gates


def test_a_used_up_minute_budget_gates_until_its_minutes_leave_the_window() -> None:
    tr = tracker(max_minutes=Rate(1, 3600.0))
    start(tr, 0, 0.0)
    tr.on_event(CallEvent("CHANNEL_ANSWER", "fs1", U[0], "acme"), 0.0)
    assert not tr.gates
    actions = tr.tick(60.5)  # the budget's timer: the call is hung up at 60 s
    assert [a.rule for a in actions if a.kind.value == "hangup"] == [Rule.MINUTES]
    gate = tr.gates["acme"]
    assert (gate.reason, gate.rule) == ("minutes", Rule.MINUTES)
    assert gate.reopens is not None and 3600.0 <= gate.reopens <= 3601.0
    tr.take_gate_changes()
    assert tr.tick(gate.reopens + 0.5) == [] and "acme" not in tr.gates
    assert tr.take_gate_changes() == ["acme"]
