"""Table tests of the detectors (issue 13) with explicit clocks, and the tracker applying them:
the abusive pattern stopped at the right call, a similar well-behaved volume untouched,
warn_only touching no call, bounded state."""
from __future__ import annotations

import pytest

from esl_guard.model import CallEvent, Limits, Patterns, Rate, Rule, clause_of
from esl_guard.policy import (
    AccountView,
    CallInfo,
    RecentCalls,
    admit,
    check_caller_id,
    check_distinct_destinations,
    check_inbound_concurrency,
    check_sequential_destinations,
    check_short_call_end,
    check_short_calls,
    check_source_ips,
    is_short,
    next_number,
    sequential_run,
)
from esl_guard.tracker import Tracker

NOW = 1000.0
WALL = 1_700_000_000.0


def recent(**kw: object) -> RecentCalls:
    r = RecentCalls()
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def view(call: CallInfo | None = None, rec: RecentCalls | None = None, **kw: object) -> AccountView:
    return AccountView("acme", call=call or CallInfo("c-1", "fs1"), recent=rec,
                       **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- helpers

@pytest.mark.parametrize("prev, number, expected", [
    ("5551000", "5551001", True),
    ("+442079460001", "+442079460002", True),
    ("0099", "0100", True),          # carries: still only the last digits differ
    ("5551001", "5551000", False),   # going down
    ("5551000", "5551002", False),   # a gap
    ("999", "1000", False),          # length changes
    ("555100a", "555100b", False),
    (None, "5551000", False),
    ("5551000", None, False),
    ("٥٥٥١", "٥٥٥٢", False),          # non-ASCII digits are not dialled numbers
])
def test_next_number(prev: str | None, number: str | None, expected: bool) -> None:
    assert next_number(prev, number) is expected


def test_sequential_run() -> None:
    assert sequential_run(None, 0, "100") == 1
    assert sequential_run("100", 1, "101") == 2
    assert sequential_run("101", 2, "500") == 1
    assert sequential_run("101", 2, None) == 0


@pytest.mark.parametrize("answered, ended, expected", [
    (None, 10.0, True),    # never answered
    (10.0, 15.9, True),    # 5.9 s
    (10.0, 16.0, False),   # exactly short_call is not short
    (10.0, 100.0, False),
])
def test_is_short(answered: float | None, ended: float, expected: bool) -> None:
    assert is_short(answered, ended, Limits(short_call=6.0)) is expected


# --------------------------------------------------------------------------- rules

ALLOWED = Limits(caller_id_allowed=Patterns(("+4420*", "02079460000")))


@pytest.mark.parametrize("caller_id, expected", [
    ("+442079460123", None),
    ("02079460000", None),
    ("020794600001", Rule.CALLER_ID),   # exact numbers are exact
    ("+4421000", Rule.CALLER_ID),
    ("", Rule.CALLER_ID),
    (None, None),                        # unknown (resync): the detector is off for the call
])
def test_caller_id(caller_id: str | None, expected: Rule | None) -> None:
    v = check_caller_id(view(CallInfo("c-1", "fs1", caller_id=caller_id)), ALLOWED, NOW, WALL)
    assert (v.rule if v else None) is expected
    if v:
        assert v.clause == "impersonation" and v.uuid == "c-1" and v.node == "fs1"
    assert check_caller_id(view(CallInfo("c", caller_id="x")), Limits(), NOW, WALL) is None


INBOUND = Limits(max_inbound_concurrent_calls=2, inbound_contexts=frozenset({"public"}))


@pytest.mark.parametrize("context, live, expected", [
    ("public", 1, None),
    ("public", 2, Rule.INBOUND_CONCURRENCY),
    ("default", 5, None),   # an outgoing call of the account
    (None, 5, None),
])
def test_inbound_concurrency(context: str | None, live: int, expected: Rule | None) -> None:
    v = check_inbound_concurrency(view(CallInfo("c", context=context), inbound_live=live),
                                  INBOUND, NOW, WALL)
    assert (v.rule if v else None) is expected
    if v:
        assert (v.limit, v.observed, v.clause) == ("2", "3", "hosting")


SHORT = Limits(max_short_calls=Rate(3, 60.0))


@pytest.mark.parametrize("ends, expected", [
    ((), None),
    ((950.0, 960.0, 970.0), None),                 # exactly N: allowed
    ((950.0, 960.0, 970.0, 980.0), "4/1m"),        # N+1 in the window
    ((940.0, 960.0, 970.0, 980.0), None),          # one exactly a window old has left
])
def test_short_calls(ends: tuple[float, ...], expected: str | None) -> None:
    v = view(rec=recent(short_calls=list(ends)))
    end = check_short_call_end(v, SHORT, NOW, WALL)
    admission = check_short_calls(v, SHORT, NOW, WALL)
    assert (end.observed if end else None) == expected
    assert (admission.observed if admission else None) == expected
    warn = Limits(max_short_calls=Rate(3, 60.0), warn_only=frozenset({"max_short_calls"}))
    assert check_short_calls(v, warn, NOW, WALL) is None  # warned at the end, not per call


IPS = Limits(max_source_ips=Rate(2, 3600.0))


@pytest.mark.parametrize("seen, ip, expected", [
    ({}, "10.0.0.1", None),
    ({"10.0.0.1": 990.0}, "10.0.0.2", None),
    ({"10.0.0.1": 990.0, "10.0.0.2": 995.0}, "10.0.0.1", None),   # a known address
    ({"10.0.0.1": 990.0, "10.0.0.2": 995.0}, "10.0.0.3", "3/1h"),
    ({"10.0.0.1": NOW - 3600, "10.0.0.2": 995.0}, "10.0.0.3", None),  # one has left
    ({"10.0.0.1": 990.0, "10.0.0.2": 995.0}, None, None),
])
def test_source_ips(seen: dict[str, float], ip: str | None, expected: str | None) -> None:
    v = check_source_ips(view(CallInfo("c", source_ip=ip), recent(source_ips=seen)), IPS, NOW,
                         WALL)
    assert (v.observed if v else None) == expected
    if v:
        assert v.clause == "shared_credentials" and "10.0.0.3" in v.detail


DISTINCT = Limits(max_distinct_destinations=Rate(2, 600.0))


@pytest.mark.parametrize("seen, number, expected", [
    ({"100": 900.0, "200": 950.0}, "200", None),
    ({"100": 900.0, "200": 950.0}, "300", "3/10m"),
    ({"100": NOW - 600, "200": 950.0}, "300", None),
    ({}, "", None),
])
def test_distinct_destinations(seen: dict[str, float], number: str,
                               expected: str | None) -> None:
    v = check_distinct_destinations(view(CallInfo("c", destination=number),
                                         recent(destinations=seen)), DISTINCT, NOW, WALL)
    assert (v.observed if v else None) == expected
    if v:
        assert v.rule is Rule.DISTINCT_DESTINATIONS and v.clause == "mass_calling"


SEQ = Limits(max_sequential_destinations=3)


@pytest.mark.parametrize("last, run, number, expected", [
    ("5551002", 2, "5551003", None),            # the 3rd of a run: allowed
    ("5551002", 3, "5551003", "4"),             # the 4th: stopped
    ("5551002", 3, "5551009", None),            # the run is broken
    (None, 0, "5551000", None),
])
def test_sequential(last: str | None, run: int, number: str, expected: str | None) -> None:
    v = check_sequential_destinations(view(CallInfo("c", destination=number),
                                           recent(last_destination=last, run=run)), SEQ, NOW, WALL)
    assert (v.observed if v else None) == expected


def test_warn_only_lets_later_rules_decide() -> None:
    limits = Limits(caller_id_allowed=Patterns(("1*",)), max_concurrent_calls=1,
                    warn_only=frozenset({"caller_id_allowed"}))
    warnings: list = []
    v = admit(view(CallInfo("c", caller_id="999"), live=1), limits, NOW, WALL, warnings)
    assert v is not None and v.rule is Rule.CONCURRENCY
    assert [w.rule for w in warnings] == [Rule.CALLER_ID]


def test_every_detector_has_its_clause() -> None:
    assert {r: clause_of(r) for r in (
        Rule.DISTINCT_DESTINATIONS, Rule.SHORT_CALLS, Rule.SEQUENTIAL_DESTINATIONS,
        Rule.SOURCE_IPS, Rule.CALLER_ID, Rule.INBOUND_CONCURRENCY)} == {
        Rule.DISTINCT_DESTINATIONS: "mass_calling", Rule.SHORT_CALLS: "mass_calling",
        Rule.SEQUENTIAL_DESTINATIONS: "mass_calling", Rule.SOURCE_IPS: "shared_credentials",
        Rule.CALLER_ID: "impersonation", Rule.INBOUND_CONCURRENCY: "hosting"}


# --------------------------------------------------------------------------- the tracker

def tracker(**accounts: Limits) -> Tracker:
    return Tracker(lambda a: accounts.get(a, Limits()), lambda: WALL)


def new_call(tr: Tracker, uuid: str, account: str, t: float, **facts: str) -> list:
    return tr.on_event(CallEvent("CHANNEL_CREATE", "fs1", uuid, account, **facts), t)


def end(tr: Tracker, uuid: str, t: float) -> list:
    return tr.on_event(CallEvent("CHANNEL_HANGUP", "fs1", uuid), t)


def answer(tr: Tracker, uuid: str, t: float) -> None:
    tr.on_event(CallEvent("CHANNEL_ANSWER", "fs1", uuid), t)


def kinds(actions: list) -> list[tuple[str, str | None, str | None]]:
    return [(a.kind.value, a.rule.value if a.rule else None, a.uuid) for a in actions]


def test_short_calls_end_is_the_violation_then_new_calls_are_refused() -> None:
    tr = tracker(robo=Limits(max_short_calls=Rate(3, 60.0)),
                 good=Limits(max_short_calls=Rate(3, 60.0)))
    t = 100.0
    for i in range(3):  # three short calls: allowed
        assert new_call(tr, f"r{i}", "robo", t) == []
        answer(tr, f"r{i}", t + 0.5)
        assert end(tr, f"r{i}", t + 2) == []
        t += 3
    live = "live-1"
    assert new_call(tr, live, "robo", t) == []      # a call up while the pattern shows
    assert new_call(tr, "r3", "robo", t) == []
    out = end(tr, "r3", t + 1)                      # never answered: short call 4 of 3
    assert kinds(out) == [("violation", "max_short_calls", "r3")]
    assert out[0].clause == "mass_calling" and out[0].observed == "4/1m"
    out = new_call(tr, "r4", "robo", t + 2)         # the next call is refused
    assert kinds(out) == [("violation", "max_short_calls", "r4"),
                          ("hangup", "max_short_calls", "r4")]
    assert tr.active("robo") == 1                   # the live call is left alone
    assert end(tr, "r4", t + 2.1) == []             # a call we refused is not a short call
    # Once the window holds N again, calls are admitted.
    assert new_call(tr, "r5", "robo", 100.0 + 60 + 0.1 + 2) == []
    # A well-behaved account with the same volume of long calls is never touched.
    t = 100.0
    for i in range(10):
        assert new_call(tr, f"g{i}", "good", t) == []
        answer(tr, f"g{i}", t + 1)
        assert end(tr, f"g{i}", t + 61) == []
        t += 3


def test_short_calls_warn_only_touches_no_call() -> None:
    tr = tracker(robo=Limits(max_short_calls=Rate(1, 60.0), warn_only=frozenset({"max_short_calls"}),
                             lock_after=Rate(1, 60.0)))
    for i in range(2):
        new_call(tr, f"r{i}", "robo", 10.0 + i)
    assert end(tr, "r0", 11.0) == []
    out = end(tr, "r1", 12.0)
    assert kinds(out) == [("warn", "max_short_calls", "r1")]
    out = new_call(tr, "r2", "robo", 13.0)
    assert out == [] and tr.active("robo") == 1 and not tr.locks


def test_sequential_dialler_is_stopped_at_call_n_plus_1_and_stays_stopped() -> None:
    tr = tracker(dialer=Limits(max_sequential_destinations=3))
    outs = [new_call(tr, f"d{i}", "dialer", 10.0 + i, destination=f"+4420794600{i:02d}")
            for i in range(6)]
    assert [bool(o) for o in outs] == [False, False, False, True, True, True]
    assert kinds(outs[3])[1] == ("hangup", "max_sequential_destinations", "d3")
    # A caller dialling a few numbers in no order is untouched.
    tr2 = tracker(office=Limits(max_sequential_destinations=3))
    numbers = ["5551000", "5551001", "5551007", "5551008", "5551009", "5552000", "5551003"]
    assert all(new_call(tr2, f"o{i}", "office", 10.0 + i, destination=n) == []
               for i, n in enumerate(numbers))


def test_distinct_destinations_and_source_ips_state_is_bounded() -> None:
    tr = tracker(spam=Limits(max_distinct_destinations=Rate(5, 60.0),
                             max_source_ips=Rate(2, 60.0)))
    refused = []
    for i in range(200):
        out = new_call(tr, f"s{i}", "spam", 10.0 + i * 0.1, destination=f"{7000 + i}",
                       source_ip="192.0.2.1")
        if out:
            refused.append(i)
        end(tr, f"s{i}", 10.0 + i * 0.1 + 0.05)
    assert refused[0] == 5 and len(refused) == 195
    st = tr.accounts["spam"].recent
    assert st is not None and len(st.destinations) <= 6 and len(st.source_ips) <= 3
    # The third address within the window is refused; redials from known ones are fine.
    out = new_call(tr, "ip3", "spam", 40.0, destination="7000", source_ip="198.51.100.7")
    assert out == []
    out = new_call(tr, "ip4", "spam", 40.1, destination="7000", source_ip="203.0.113.9")
    assert kinds(out)[1] == ("hangup", "max_source_ips", "ip4")


def test_inbound_calls_are_counted_apart_from_outgoing_ones() -> None:
    limits = Limits(max_inbound_concurrent_calls=1, inbound_contexts=frozenset({"public"}))
    tr = tracker(home=limits)
    assert new_call(tr, "out1", "home", 1.0, context="default") == []
    assert new_call(tr, "out2", "home", 1.1, context="default") == []
    assert new_call(tr, "in1", "home", 1.2, context="public") == []
    out = new_call(tr, "in2", "home", 1.3, context="public")
    assert kinds(out)[1] == ("hangup", "max_inbound_concurrent_calls", "in2")
    end(tr, "in1", 2.0)
    assert new_call(tr, "in3", "home", 2.1, context="public") == []


def test_detectors_off_keep_no_state() -> None:
    tr = tracker()
    new_call(tr, "a", "plain", 1.0, destination="100", source_ip="192.0.2.1")
    end(tr, "a", 2.0)
    assert tr.accounts["plain"].recent is None


def test_pruning_idle_accounts_keeps_the_detectors_memory() -> None:
    """The daemon prunes every few seconds: an account with no live call keeps its short-call
    window (and run, distinct values) until it has been idle for the horizon."""
    tr = tracker(robo=Limits(max_short_calls=Rate(1, 600.0)))
    for i in range(2):
        new_call(tr, f"r{i}", "robo", 10.0 + i)
        end(tr, f"r{i}", 10.5 + i)
    assert tr.prune(20.0) == 0
    assert kinds(new_call(tr, "r2", "robo", 21.0))[1] == ("hangup", "max_short_calls", "r2")
    end(tr, "r2", 21.5)
    assert tr.prune(21.5 + 86400.0) == 1 and "robo" not in tr.accounts


def test_warn_only_on_a_count_rule_warns_once_and_keeps_the_call() -> None:
    tr = tracker(chatty=Limits(max_call_duration=10.0, max_concurrent_calls=1,
                               warn_only=frozenset({"max_call_duration",
                                                    "max_concurrent_calls"})))
    new_call(tr, "c1", "chatty", 1.0)
    answer(tr, "c1", 2.0)
    out = new_call(tr, "c2", "chatty", 3.0)
    assert kinds(out) == [("warn", "max_concurrent_calls", "c2")]
    out = tr.tick(12.5)
    assert kinds(out) == [("warn", "max_call_duration", "c1")]
    assert tr.tick(30.0) == [] and tr.active("chatty") == 2
