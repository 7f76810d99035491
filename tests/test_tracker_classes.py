"""Destination classes, minute budgets and exempt calls in the enforcement core (issue 12), with
explicit clocks: no sockets, no sleeping."""
from __future__ import annotations

from esl_guard.model import ActionKind, CallEvent, ChannelRow, Limits, Lock, Rate, Rule
from esl_guard.policy import DestinationClass, Destinations
from esl_guard.tracker import Tracker

U = [f"00000000-0000-4000-8000-{i:012d}" for i in range(200)]

PREMIUM = DestinationClass("premium", ("1900", "44871"), values={
    "max_concurrent_calls": 1, "max_call_rate": Rate(3, 3600.0)})
BUDGET = DestinationClass("budget", ("882",), values={"max_minutes": Rate(10, 3600.0)})
DURATION = DestinationClass("timed", ("883",), values={"max_call_duration": 60.0})
EMERGENCY = DestinationClass("emergency", ("112", "911"), exempt=True)
CLASSES = [PREMIUM, BUDGET, DURATION, EMERGENCY]


class Clock:
    wall = 1_800_000_000.0

    def __call__(self) -> float:
        return self.wall


def make(policy: Limits = Limits(), classes: list[DestinationClass] = CLASSES,
         overrides: dict | None = None, **accounts: Limits) -> Tracker:
    dests = Destinations(classes, policy, accounts, overrides)
    return Tracker(lambda a: accounts.get(a, policy), Clock(), dests)


def call(tr: Tracker, i: int, number: str, now: float, account: str = "acme",
         name: str = "CHANNEL_CREATE") -> list:
    return tr.on_event(CallEvent(name, "fs1", U[i], account, destination=number), now)


def answer(tr: Tracker, i: int, now: float) -> list:
    return tr.on_event(CallEvent("CHANNEL_ANSWER", "fs1", U[i]), now)


def end(tr: Tracker, i: int, now: float) -> list:
    return tr.on_event(CallEvent("CHANNEL_HANGUP", "fs1", U[i]), now)


def hangups(actions: list) -> list[tuple[str, Rule | None, str | None]]:
    return [(a.uuid, a.rule, a.destination_class) for a in actions
            if a.kind is ActionKind.HANGUP]


def test_a_class_limit_applies_in_addition_to_the_account_s() -> None:
    tr = make(Limits(max_concurrent_calls=3))
    assert call(tr, 0, "+19005550000", 0) == []
    acts = call(tr, 1, "+4487155500", 1)      # the 2nd premium call: over the class limit
    assert hangups(acts) == [(U[1], Rule.CONCURRENCY, "premium")]
    v = acts[0]
    assert (v.kind, v.limit, v.observed, v.destination, v.destination_class) == (
        ActionKind.VIOLATION, "1", "2", "+4487155500", "premium")
    assert call(tr, 2, "+442071234567", 2) == []  # in no class: only the account's limit
    assert call(tr, 3, "0033123", 3) == []
    acts = call(tr, 4, "0044", 4)              # the account's 4th call: its own limit
    assert hangups(acts) == [(U[4], Rule.CONCURRENCY, None)]
    assert tr.active("acme") == 3


def test_class_limits_are_per_account_and_class_key_overrides() -> None:
    tr = make(overrides={"acme": {"premium": {"max_concurrent_calls": 2}}}, acme=Limits())
    assert call(tr, 0, "1900", 0) == [] and call(tr, 1, "1900", 1) == []
    assert hangups(call(tr, 2, "1900", 2)) == [(U[2], Rule.CONCURRENCY, "premium")]
    assert call(tr, 3, "1900", 3, account="bob") == []  # bob's own slot of the class
    assert hangups(call(tr, 4, "1900", 4, account="bob"))


def test_class_rate_counts_the_class_s_attempts_only() -> None:
    tr = make()
    for i in range(3):
        assert call(tr, i, "1900", i) == []
        end(tr, i, i + 0.5)
    assert call(tr, 10, "4420", 4) == []       # not a premium call
    assert hangups(call(tr, 11, "1900", 5)) == [(U[11], Rule.RATE, "premium")]


def test_class_duration_and_the_earlier_deadline_wins() -> None:
    tr = make(Limits(max_call_duration=3600.0))
    call(tr, 0, "883123", 0)
    answer(tr, 0, 10)
    call(tr, 1, "4420", 0)
    answer(tr, 1, 10)
    assert tr.tick(69.0) == []
    acts = tr.tick(70.1)
    assert hangups(acts) == [(U[0], Rule.DURATION, "timed")]


def test_an_exempt_call_is_never_refused_or_counted_even_locked_or_failing_closed() -> None:
    tr = make(Limits(max_concurrent_calls=0))
    tr.apply_lock(Lock("acme", "l1", None, "fraud", "manual"))
    tr.set_fail_closed(True)
    acts = call(tr, 0, "+112", 0)
    assert [(a.kind, a.destination, a.destination_class) for a in acts] == [
        (ActionKind.EXEMPT, "+112", "emergency")]
    assert "never refused" in acts[0].detail
    answer(tr, 0, 1)
    assert tr.active("acme") == 0 and tr.tick(10**6) == []
    assert hangups(call(tr, 1, "1900", 2))  # the same account's other calls are refused
    assert tr.retime(3) == []               # a reload does not touch it either
    tr.release_lock("acme", "manual")
    assert tr.apply_lock(Lock("acme", "l2", None, "again", "manual"))[1:] == []
    end(tr, 0, 5)


def test_an_exempt_call_found_by_a_resync_is_not_counted() -> None:
    tr = make(Limits(max_concurrent_calls=0))
    tr.apply_lock(Lock("acme", "l1", None, "fraud", "manual"))
    rows = [ChannelRow(U[0], "acme", False, True, 5.0, destination="911"),
            ChannelRow(U[1], "acme", False, True, 5.0, destination="1900")]
    _, _, acts = tr.resync("fs1", rows, 10.0)
    assert [(a.kind, a.uuid, a.destination_class) for a in acts] == [
        (ActionKind.EXEMPT, U[0], "emergency"), (ActionKind.HANGUP, U[1], "premium")]


def test_minute_budget_hangs_up_live_calls_at_the_second_it_is_used_up() -> None:
    tr = make(Limits(max_minutes=Rate(10, 3600.0)))
    call(tr, 0, "4420", 0)
    answer(tr, 0, 0)
    call(tr, 1, "4420", 100)
    answer(tr, 1, 100)   # two calls: 600 s are used at t = 350 (350 + 250)
    assert tr.tick(349.0) == []
    acts = tr.tick(350.1)
    assert sorted(hangups(acts)) == sorted([(U[0], Rule.MINUTES, None),
                                            (U[1], Rule.MINUTES, None)])
    v = [a for a in acts if a.kind is ActionKind.VIOLATION][0]
    assert (v.limit, v.observed) == ("10/1h", "10/1h")
    end(tr, 0, 350.2)
    end(tr, 1, 350.2)
    # While the window holds 10 minutes, new calls are refused ...
    assert hangups(call(tr, 2, "4420", 400)) == [(U[2], Rule.MINUTES, None)]
    # ... until minutes leave it (the first call's start leaves at 3600).
    assert call(tr, 3, "4420", 3601) == []
    assert list(tr.minutes_out)[:2] == [("acme", None, 0.0, 350.1), ("acme", None, 100.0, 350.1)]


def test_a_class_budget_counts_only_the_class_s_calls() -> None:
    tr = make(Limits(max_minutes=Rate(60, 3600.0)))
    call(tr, 0, "882111", 0)
    answer(tr, 0, 0)
    call(tr, 1, "4420", 0)
    answer(tr, 1, 0)
    acts = tr.tick(600.1)   # the class's 10 minutes
    assert hangups(acts) == [(U[0], Rule.MINUTES, "budget")]
    assert tr.tick(1200.0) == []  # the account's 60 minutes are not used up: 10 + 20
    assert hangups(call(tr, 2, "882", 1300)) == [(U[2], Rule.MINUTES, "budget")]
    assert call(tr, 3, "4420", 1300) == []


def test_an_ended_call_s_minutes_leave_a_window_that_a_live_call_then_fills() -> None:
    """The budget deadline is looked at again when it fires early (old minutes left)."""
    tr = make(Limits(max_minutes=Rate(10, 1000.0)))
    call(tr, 0, "4420", 0)
    answer(tr, 0, 0)
    end(tr, 0, 300)         # 5 minutes, leaving the window from t = 1000 on
    call(tr, 1, "4420", 900)
    answer(tr, 1, 900)      # armed for 1200 (5 min left); at 1200 only 5 min of it + 0
    assert tr.tick(1200.1) == []
    assert tr.tick(1499.0) == []
    assert hangups(tr.tick(1500.1)) == [(U[1], Rule.MINUTES, None)]


def test_restored_minutes_fill_the_window_after_a_restart() -> None:
    tr = make(Limits(max_minutes=Rate(10, 3600.0)))
    n = tr.restore_minutes([("acme", "budget", -700.0, -100.0), ("gone", None, -10.0, -5.0)],
                           0.0)
    assert n == 2
    assert hangups(call(tr, 0, "4420", 1)) == [(U[0], Rule.MINUTES, None)]
    assert hangups(call(tr, 1, "882", 1, account="gone")) == []


def test_blocked_tells_whether_the_next_call_would_be_refused() -> None:
    tr = make(Limits(max_concurrent_calls=5))
    assert tr.blocked("acme", 0) == {}
    call(tr, 0, "1900", 0)
    got = tr.blocked("acme", 1)
    assert {k: v.rule for k, v in got.items()} == {("acme", "premium"): Rule.CONCURRENCY}
    tr.apply_lock(Lock("acme", "l1", None, "fraud", "manual"))
    got = tr.blocked("acme", 2)
    assert {k: v.rule for k, v in got.items()} == {
        ("acme", None): Rule.LOCKED, ("acme", "premium"): Rule.LOCKED,
        ("acme", "budget"): Rule.LOCKED, ("acme", "timed"): Rule.LOCKED}


def test_detectors_set_in_a_class_watch_the_account_s_calls_to_it() -> None:
    cls = DestinationClass("intl", ("00",), values={"max_distinct_destinations": Rate(2, 600.0)})
    tr = make(classes=[cls])
    assert call(tr, 0, "0044", 0) == [] and call(tr, 1, "0045", 1) == []
    assert call(tr, 2, "4420", 2) == [] and call(tr, 3, "4421", 3) == []  # other numbers
    acts = call(tr, 4, "0046", 4)
    assert hangups(acts) == [(U[4], Rule.DISTINCT_DESTINATIONS, "intl")]


def test_short_calls_to_a_class() -> None:
    cls = DestinationClass("intl", ("00",), values={"max_short_calls": Rate(2, 600.0)})
    tr = make(classes=[cls])
    for i in range(3):
        call(tr, i, "0044", i)
        acts = end(tr, i, i + 0.5)
    assert [(a.kind, a.rule, a.destination_class) for a in acts] == [
        (ActionKind.VIOLATION, Rule.SHORT_CALLS, "intl")]
    assert hangups(call(tr, 9, "0044", 10)) == [(U[9], Rule.SHORT_CALLS, "intl")]
    assert call(tr, 10, "4420", 10) == []


def test_a_deferred_class_duration_hangup_is_still_due_after_the_reconnect() -> None:
    """The call passed its class's max_call_duration while its node was down (the account
    itself has no duration limit): the reconnect's resync carries the hangup out."""
    tr = make()
    call(tr, 0, "883123", 0)
    answer(tr, 0, 0)
    acts = tr.tick(60.1)
    assert hangups(acts) == [(U[0], Rule.DURATION, "timed")]
    for a in acts:
        tr.defer(a)
    _, _, due = tr.resync("fs1", [ChannelRow(U[0], "acme", False, True, 70.0,
                                             destination="883123")], 70.0)
    assert hangups(due) == [(U[0], Rule.DURATION, "timed")]


def test_status_shows_the_minutes_and_the_classes_of_the_busiest_accounts() -> None:
    from esl_guard.config import Config
    from esl_guard.status import render_status

    tr = make(Limits(max_minutes=Rate(600, 86400.0)))
    call(tr, 0, "882123", 0)
    answer(tr, 0, 0)
    call(tr, 1, "4420", 0)
    usage = tr.class_usage("acme", 300.0)
    assert usage == {"minutes": 5.0, "max_minutes": "600/1d",
                     "classes": {"budget": {"minutes": 5.0, "max_minutes": "10/1h",
                                            "active": 1, "limit": None}}}

    class Store:
        def get_status(self) -> tuple[float, dict]:
            return 1.0, {"busiest": [{"account": "acme", "active": 2, "limit": 5, **usage}],
                         "started": 0.0}

        def active_locks(self, now: float) -> list:
            return []

        def members(self) -> list:
            return []

        def audit(self, **kw: object) -> list:
            return []

    text = render_status(Store(), Config(nodes=()), as_json=False, now=2.0, utc=True)
    assert "  acme                         2 / 5   5 min / 600/1d" in text
    assert "    budget                     1 / no limit   5 min / 10/1h" in text
