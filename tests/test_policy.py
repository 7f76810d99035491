"""Table tests of every rule in esl_guard.policy, with explicit clocks (``now`` monotonic,
``wall`` epoch seconds).  Each row: state, limits, clocks -> expected verdict (or None)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from esl_guard.model import Limits, Lock, Rate, Rule
from esl_guard.policy import (
    ADMISSION_RULES,
    ESCALATION_WINDOW,
    AccountView,
    CallInfo,
    Verdict,
    admit,
    adopt,
    check_concurrency,
    check_duration,
    check_lock_after,
    check_lock_expiry,
    check_lock_state,
    check_locked,
    check_rate,
    count_from,
    count_since,
    counts_as_attempt,
    duration_deadline,
    escalation_count,
    hash_value,
    in_window,
    lock_active,
    lock_duration,
    parse_hash_dump,
    reconcile_locks,
    restored_windows,
    stale_hash_keys,
)

NOW = 1000.0         # monotonic
WALL = 1_700_000_000.0
CALL = CallInfo("c-1", "fs1")


def view(**kw: object) -> AccountView:
    return AccountView("acme", call=CALL, **kw)  # type: ignore[arg-type]


def lock(until: float | None, lock_id: str = "L1", reason: str = "abuse") -> Lock:
    return Lock("acme", lock_id, until, reason, "manual")


# --------------------------------------------------------------------------- windows

@pytest.mark.parametrize("times, horizon, expected", [
    ((), 5.0, 0),
    ((1.0, 2.0, 3.0), 0.0, 3),
    ((1.0, 2.0, 3.0), 1.0, 2),    # an entry exactly at the horizon has left
    ((1.0, 2.0, 3.0), 2.5, 1),
    ((1.0, 2.0, 3.0), 3.0, 0),
])
def test_count_since(times: tuple[float, ...], horizon: float, expected: int) -> None:
    assert count_since(times, horizon) == expected


@pytest.mark.parametrize("times, start, expected", [
    ((), 5.0, 0), ((1.0, 2.0, 3.0), 2.0, 2), ((1.0, 2.0, 3.0), 3.5, 0),
])
def test_count_from(times: tuple[float, ...], start: float, expected: int) -> None:
    assert count_from(times, start) == expected


def test_in_window_is_half_open() -> None:
    assert in_window((940.0, 940.5, 999.0), NOW, 60.0) == 2  # (940, 1000]


# --------------------------------------------------------------------------- admission

@pytest.mark.parametrize("unknown, expected", [(False, None), (True, Rule.LOCKED)])
def test_check_lock_state(unknown: bool, expected: Rule | None) -> None:
    v = check_lock_state(view(lock_state_unknown=unknown), Limits(), NOW, WALL)
    assert (v.rule if v else None) is expected
    if v:
        assert (v.clause, v.violation, v.uuid, v.node) == ("locked", False, "c-1", "fs1")
        assert "fail_mode = closed" in v.detail


@pytest.mark.parametrize("the_lock, expected", [
    (None, False),
    (lock(None), True),                 # forever
    (lock(WALL + 1), True),             # expires in a second
    (lock(WALL), False),                # expires now: over
    (lock(WALL - 1), False),            # expired, timer not fired yet: never refuses
])
def test_check_locked(the_lock: Lock | None, expected: bool) -> None:
    assert lock_active(the_lock, WALL) is expected
    v = check_locked(view(lock=the_lock), Limits(), NOW, WALL)
    assert (v is not None) is expected
    if v:
        assert v == Verdict(Rule.LOCKED, "locked", uuid="c-1", node="fs1",
                            detail="account locked: abuse", violation=False)


@pytest.mark.parametrize("creations, rate, expected_observed", [
    ((), None, None),                               # off
    ((), Rate(1, 60), None),                        # the first call
    ((990.0,), Rate(1, 60), "2/1m"),                # N+1 fails
    ((950.0, 990.0), Rate(3, 60), None),            # exactly N passes
    ((945.0, 950.0, 990.0), Rate(3, 60), "4/1m"),   # N+1 fails
    ((940.0, 950.0, 990.0), Rate(3, 60), None),     # 940 is exactly 60 s old: left the window
    ((940.5, 950.0, 990.0), Rate(3, 60), "4/1m"),   # 59.5 s old: still in it
    ((996.0, 997.0, 998.0, 999.0), Rate(2, 60), "3/1m"),  # observed capped at N+1
])
def test_check_rate(creations: tuple[float, ...], rate: Rate | None,
                    expected_observed: str | None) -> None:
    v = check_rate(view(creations=creations), Limits(max_call_rate=rate), NOW, WALL)
    assert (v.observed if v else None) == expected_observed
    if v:
        assert rate is not None
        assert (v.rule, v.clause, v.limit, v.violation) == (
            Rule.RATE, "denial_of_service", str(rate), True)
        assert v.detail == f"max_call_rate {v.observed} over limit {rate}"


@pytest.mark.parametrize("live, cap, expected_observed", [
    (5, None, None),
    (0, 0, "1"),      # max_concurrent_calls = 0 refuses every call
    (0, 1, None),
    (1, 2, None),     # this call is call 2: exactly N passes
    (2, 2, "3"),      # call N+1 fails
])
def test_check_concurrency(live: int, cap: int | None, expected_observed: str | None) -> None:
    v = check_concurrency(view(live=live), Limits(max_concurrent_calls=cap), NOW, WALL)
    assert (v.observed if v else None) == expected_observed
    if v:
        assert (v.rule, v.clause, v.limit, v.uuid) == (
            Rule.CONCURRENCY, "denial_of_service", str(cap), "c-1")


OVER_ALL = Limits(max_concurrent_calls=1, max_call_rate=Rate(1, 60))


@pytest.mark.parametrize("state, expected", [
    ({}, None),
    ({"live": 1}, Rule.CONCURRENCY),
    ({"live": 1, "creations": (999.0,)}, Rule.RATE),                        # rate before slots
    ({"live": 1, "creations": (999.0,), "lock": lock(None)}, Rule.LOCKED),  # lock first
    ({"lock_state_unknown": True}, Rule.LOCKED),
])
def test_admit_runs_the_rules_in_order(state: dict[str, object], expected: Rule | None) -> None:
    v = admit(view(**state), OVER_ALL, NOW, WALL)
    assert (v.rule if v else None) is expected


def test_admission_rules_order() -> None:
    assert [f.__name__ for f in ADMISSION_RULES] == [
        "check_lock_state", "check_locked", "check_caller_id", "check_rate", "check_concurrency",
        "check_minutes", "check_inbound_concurrency", "check_short_calls", "check_source_ips",
        "check_distinct_destinations", "check_sequential_destinations"]


@pytest.mark.parametrize("state, expected", [
    ({"live": 5, "creations": (999.0, 999.5)}, None),  # adopted calls skip the limits
    ({"lock_state_unknown": True}, None),
    ({"lock": lock(None)}, Rule.LOCKED),
    ({"lock": lock(WALL - 1)}, None),
])
def test_adopt_checks_only_the_lock(state: dict[str, object], expected: Rule | None) -> None:
    v = adopt(view(**state), OVER_ALL, NOW, WALL)
    assert (v.rule if v else None) is expected


@pytest.mark.parametrize("verdict, counts", [
    (None, True),
    (Verdict(Rule.RATE, "denial_of_service"), True),
    (Verdict(Rule.LOCKED, "locked", violation=False), False),
])
def test_counts_as_attempt(verdict: Verdict | None, counts: bool) -> None:
    assert counts_as_attempt(verdict) is counts


# --------------------------------------------------------------------------- duration

@pytest.mark.parametrize("answered, limit, expected_observed", [
    (None, 60.0, None),        # not answered
    (900.0, None, None),       # off
    (940.5, 60.0, None),       # 59.5 s
    (940.0, 60.0, "1m"),       # exactly at the limit: over
    (900.0, 60.0, "100s"),
])
def test_check_duration(answered: float | None, limit: float | None,
                        expected_observed: str | None) -> None:
    limits = Limits(max_call_duration=limit)
    call = CallInfo("c-1", "fs1", answered)
    v = check_duration(AccountView("acme", call=call), limits, NOW, WALL)
    assert (v.observed if v else None) == expected_observed
    if answered is not None and limit is not None:
        assert duration_deadline(answered, limits) == answered + limit
    if v:
        assert (v.rule, v.clause, v.uuid, v.node, v.violation) == (
            Rule.DURATION, "network_use", "c-1", "fs1", True)


def test_duration_without_a_call_is_no_verdict() -> None:
    assert check_duration(AccountView("acme"), Limits(max_call_duration=1.0), NOW, WALL) is None


# --------------------------------------------------------------------------- lock_after

AFTER = Limits(lock_after=Rate(3, 600), lock_duration=3600.0)


@pytest.mark.parametrize("violations, limits, the_lock, expected_observed", [
    ((), Limits(), None, None),                        # off
    ((), AFTER, None, None),                           # 1 of 3
    ((900.0,), AFTER, None, None),                     # 2 of 3
    ((800.0, 900.0), AFTER, None, "3/10m"),            # exactly N locks
    ((400.0, 900.0), AFTER, None, None),               # 400 is exactly 600 s old: out
    ((400.5, 900.0), AFTER, None, "3/10m"),
    ((800.0, 900.0), AFTER, lock(None), None),         # already locked: no new lock
    ((800.0, 900.0), AFTER, lock(WALL - 1), "3/10m"),  # an expired lock does not count
])
def test_check_lock_after(violations: tuple[float, ...], limits: Limits,
                          the_lock: Lock | None, expected_observed: str | None) -> None:
    v = check_lock_after(view(violations=violations, lock=the_lock), limits, NOW, WALL,
                         Rule.RATE)
    assert (v.observed if v else None) == expected_observed
    if v:
        assert (v.rule, v.clause, v.violation, v.until) == (
            Rule.LOCK_AFTER, "denial_of_service", False, WALL + 3600.0)
        assert v.detail == "3/10m violations (lock_after 3/10m)"


@pytest.mark.parametrize("history, limits, expected", [
    ((), AFTER, 3600.0),
    ((WALL - 10,), replace(AFTER, lock_escalation=2.0), 7200.0),
    ((WALL - 20, WALL - 10), replace(AFTER, lock_escalation=2.0), 14400.0),
    ((WALL - 20, WALL - 10), replace(AFTER, lock_escalation=2.0, lock_duration_max=5000.0),
     5000.0),
    ((WALL - ESCALATION_WINDOW,), replace(AFTER, lock_escalation=2.0), 7200.0),  # at the edge
    ((WALL - ESCALATION_WINDOW - 1,), replace(AFTER, lock_escalation=2.0), 3600.0),
    ((WALL - 10,), replace(AFTER, lock_duration=None), None),  # forever
])
def test_lock_duration_escalates(history: tuple[float, ...], limits: Limits,
                                 expected: float | None) -> None:
    assert lock_duration(history, limits, WALL) == expected


def test_lock_after_uses_the_escalated_duration() -> None:
    limits = replace(AFTER, lock_escalation=2.0)
    v = check_lock_after(view(violations=(800.0, 900.0), lock_history=(WALL - 60,)), limits,
                         NOW, WALL)
    assert v is not None and v.until == WALL + 7200.0
    assert escalation_count((WALL - 60,), WALL) == 1


@pytest.mark.parametrize("the_lock, expired", [
    (None, False), (lock(None), False), (lock(WALL + 1), False), (lock(WALL), True),
    (lock(WALL - 5), True),
])
def test_check_lock_expiry(the_lock: Lock | None, expired: bool) -> None:
    v = check_lock_expiry(AccountView("acme", lock=the_lock), Limits(), NOW, WALL)
    assert (v is not None) is expired
    if v:
        assert (v.rule, v.clause, v.violation) == (Rule.LOCKED, "locked", False)
    # the two lock tests never disagree
    assert expired is (the_lock is not None and not lock_active(the_lock, WALL))


# --------------------------------------------------------------------------- locks: held vs stored

def held(lock_id: str, since: float, *, pending: bool = False, until: float | None = None,
         origin: str = "auto") -> Lock:
    return Lock("acme", lock_id, until, "abuse", origin, pending=pending, since=since)


@pytest.mark.parametrize("h, s, unlocked, expected", [
    # nothing on either side
    (None, None, None, []),
    # the database confirms the lock decided here
    (held("L1", WALL, pending=True), held("L1", WALL), None, [("confirm", "L1", "", False)]),
    (held("L1", WALL), held("L1", WALL), None, []),
    # a stored lock the daemon does not hold (manual lock): applied, audit row exists
    (None, held("M1", WALL, origin="manual"), None, [("apply", "M1", "", True)]),
    # a newer manual lock supersedes a pending one (item 5)...
    (held("L1", WALL, pending=True), held("M1", WALL + 5, origin="manual"), None,
     [("apply", "M1", "", True)]),
    # ...an older stored lock gives way to the pending one (it supersedes it when written)
    (held("L1", WALL, pending=True), held("M0", WALL - 5, origin="manual"), None, []),
    # a confirmed lock the database replaced
    (held("L1", WALL), held("M1", WALL + 5, origin="manual"), None, [("apply", "M1", "", True)]),
    # a confirmed lock gone from the database: unlocked by the operator...
    (held("L1", WALL, until=WALL + 600), None, None, [("release", "L1", "manual", True)]),
    (held("L1", WALL), None, None, [("release", "L1", "manual", True)]),
    # ...or expired (1 s slack: the database drops it at its expiry)
    (held("L1", WALL - 600, until=WALL + 0.5), None, None, [("release", "L1", "expiry", False)]),
    # a pending lock is kept until written (database outage)...
    (held("L1", WALL, pending=True), None, None, []),
    # ...unless an unlock came at or after its start (item 18), even at the same second
    (held("L1", WALL, pending=True), None, WALL + 1, [("release", "L1", "manual", False)]),
    (held("L1", WALL, pending=True), None, WALL, [("release", "L1", "manual", False)]),
    # an unlock before it does not end it
    (held("L1", WALL, pending=True), None, WALL - 1, []),
    (held("L1", WALL, pending=True), held("M0", WALL - 5), WALL - 1, []),
])
def test_reconcile_locks(h: Lock | None, s: Lock | None, unlocked: float | None,
                         expected: list[tuple[str, str, str, bool]]) -> None:
    changes = reconcile_locks({"acme": h} if h else {}, {"acme": s} if s else {},
                              {"acme": unlocked} if unlocked is not None else {}, WALL)
    assert [(c.kind, c.lock.lock_id, c.origin, c.recorded) for c in changes] == expected


def test_reconcile_locks_of_several_accounts_is_per_account() -> None:
    a = Lock("a", "La", None, "", "auto", pending=True, since=WALL)
    b = Lock("b", "Lb", None, "", "auto", since=WALL)
    changes = reconcile_locks({"a": a, "b": b}, {"a": a}, {"b": WALL + 1}, WALL)
    assert [(c.kind, c.lock.account) for c in changes] == [("confirm", "a"), ("release", "b")]


# --------------------------------------------------------------------------- after a restart

@pytest.mark.parametrize("events, expected", [
    ([], {}),
    ([("a", 1.0, "violation"), ("a", 2.0, "violation")], {"a": [1.0, 2.0]}),
    # the violations that led to a lock never count again (item 6)
    ([("a", 1.0, "violation"), ("a", 2.0, "violation"), ("a", 2.0, "lock")], {}),
    ([("a", 1.0, "violation"), ("a", 2.0, "lock"), ("a", 3.0, "violation")], {"a": [3.0]}),
    # per account
    ([("a", 1.0, "violation"), ("b", 1.5, "violation"), ("a", 2.0, "lock")], {"b": [1.5]}),
])
def test_restored_windows(events: list[tuple[str, float, str]],
                          expected: dict[str, list[float]]) -> None:
    assert restored_windows(events) == expected


# --------------------------------------------------------------------------- mod_hash

@pytest.mark.parametrize("until, expected", [
    (None, "forever"), (WALL + 0.9, str(int(WALL))), (WALL + 3600.0, str(int(WALL) + 3600)),
])
def test_hash_value_rounds_the_expiry_down(until: float | None, expected: str) -> None:
    assert hash_value(until) == expected


def test_parse_hash_dump_takes_the_realm_entries_of_the_real_answer() -> None:
    body = ("D/esl_guard_bob/1764400000\nD/esl_guard_acme/forever\n"
            "D/esl_guard_carol.x@y/until_1764400000\nD/other_dave/1\nD/my_esl_guard_x/1\n")
    assert parse_hash_dump(body, "esl_guard") == {
        "bob": "1764400000", "acme": "forever", "carol.x@y": "until_1764400000"}
    assert parse_hash_dump("-ERR no reply\n", "esl_guard") == {}


@pytest.mark.parametrize("entries, locks, known, expected", [
    ({}, {}, True, []),
    # an active lock stays; an entry with no lock goes, whatever its value
    ({"acme": str(int(WALL) + 60), "bob": "forever"}, {"acme": WALL + 60}, True, ["bob"]),
    # the entry of an expired lock goes
    ({"acme": str(int(WALL) - 1)}, {"acme": WALL - 1}, True, ["acme"]),
    # lock state unknown: only entries that expired (either format) go
    ({"a": "forever", "b": str(int(WALL) + 60), "c": str(int(WALL) - 1),
      "d": f"until_{int(WALL) - 1}", "e": "junk"}, {}, False, ["c", "d"]),
])
def test_stale_hash_keys(entries: dict[str, str], locks: dict[str, float], known: bool,
                         expected: list[str]) -> None:
    held_locks = {a: Lock(a, f"L-{a}", until, "", "auto") for a, until in locks.items()}
    assert stale_hash_keys(entries, held_locks, WALL, known) == expected


def test_a_rule_whose_limit_is_off_never_decides_so_admit_may_skip_it() -> None:
    """admission_rules_on leaves out the rules whose RULE_NEEDS field is None: each of them
    returns None then, even on an account over every limit (so admit decides the same)."""
    from esl_guard.model import Patterns
    from esl_guard.policy.admission import (
        ADMISSION_RULES,
        RULE_NEEDS,
        admission_rules_on,
    )
    from esl_guard.policy.detectors import RecentCalls
    from esl_guard.policy.verdict import CallInfo

    recent = RecentCalls()
    recent.destinations = {f"{n}": 99.0 for n in range(1000, 1050)}
    recent.source_ips = {f"10.0.0.{n}": 99.0 for n in range(50)}
    recent.last_destination, recent.run = "1049", 40
    recent.short_calls = [99.0] * 50
    call = CallInfo("00000000-0000-4000-8000-000000000001", "n", None, "1050", "bad",
                    "10.0.1.1", "public")
    busy = AccountView("a", live=50, creations=[99.0] * 50, call=call, recent=recent,
                       inbound_live=50, minutes=1e6)
    off = Limits()
    on = Limits(max_call_rate=Rate(1, 60.0), max_concurrent_calls=1,
                caller_id_allowed=Patterns(("+44*",)), max_minutes=Rate(1, 3600.0),
                max_inbound_concurrent_calls=1, inbound_contexts=frozenset({"public"}),
                max_short_calls=Rate(1, 60.0), max_source_ips=Rate(1, 60.0),
                max_distinct_destinations=Rate(1, 60.0), max_sequential_destinations=1)
    for rule, field in RULE_NEEDS.items():
        assert rule in ADMISSION_RULES
        assert getattr(off, field) is None
        assert rule(busy, off, 100.0, 100.0) is None, rule.__name__
        assert rule(busy, on, 100.0, 100.0) is not None, rule.__name__  # the view is busy
    assert admission_rules_on(off) == tuple(r for r in ADMISSION_RULES if r not in RULE_NEEDS)
    assert admission_rules_on(on) == ADMISSION_RULES
    assert admission_rules_on(on) is admission_rules_on(on)  # remembered
