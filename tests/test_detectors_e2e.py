"""Each detector end to end over real TCP against the ESL simulator: the abusive pattern is
stopped at the right call, a well-behaved account with a similar volume is untouched, and
warn_only touches no call (issue 13)."""
from __future__ import annotations

import gevent

from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store
from tests.harness import Harness, wait_for
from tests.webhook_receiver import Receiver


def killed(fs: FakeFreeSWITCH) -> list[str]:
    return [u for u, _ in fs.kills]


def tracked(h: Harness, uuid: str) -> bool:
    assert h.daemon is not None
    call = h.daemon.guard.tracker.nodes.get("default", {}).get(uuid)
    return call is not None and call.account is not None


def audit(h: Harness) -> list[dict]:
    assert h.daemon is not None and h.daemon.writer.flush(5)
    store = Store(h.db_url)
    try:
        return store.audit()
    finally:
        store.close()


def test_caller_id_outside_the_allowed_patterns_is_refused_before_the_answer(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("caller_id_allowed = +4420* 02079460000")
    good = [fs.create_call("office", caller_id=cid) for cid in
            ("+442079460001", "02079460000", "+442000000000", "+442079460002")]
    bad = fs.create_call("office", caller_id="+12025550100")
    assert wait_for(lambda: killed(fs) == [bad])
    assert all(u in fs.calls() for u in good)
    assert not fs.calls().get(bad)  # ended, never answered
    rows = [r for r in audit(h) if r["kind"] == "hangup"]
    assert [(r["rule"], r["clause"], r["uuid"]) for r in rows] == [
        ("caller_id_allowed", "impersonation", bad)]


def test_a_burst_of_short_calls_is_stopped_and_long_calls_are_not(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("max_short_calls = 3/1m\nshort_call = 500ms")
    # well-behaved: the same number of calls, each up longer than short_call
    long_calls = [fs.create_call("callcentre") for _ in range(5)]
    for u in long_calls:
        fs.answer(u)
    gevent.sleep(0.6)  # the calls last 0.6 s (scenario time, not synchronisation)
    for u in long_calls:
        fs.hangup(u)
    live = fs.create_call("robo", account_on="create")  # up before the pattern shows
    # the robocaller: 4 calls answered and dropped at once (short call 4 of 3 is the violation)
    for _ in range(4):
        u = fs.create_call("robo")
        fs.answer(u)
        fs.hangup(u)
    nxt = fs.create_call("robo")
    assert wait_for(lambda: killed(fs) == [nxt])
    assert live in fs.calls()  # the live call is left alone
    after = fs.create_call("callcentre")
    assert wait_for(lambda: tracked(h, after)) and killed(fs) == [nxt]
    rows = [(r["kind"], r["account"], r["rule"], r["clause"]) for r in audit(h)]
    assert rows == [("violation", "robo", "max_short_calls", "mass_calling"),
                    ("violation", "robo", "max_short_calls", "mass_calling"),
                    ("hangup", "robo", "max_short_calls", "mass_calling")]


def test_sequential_dialling_is_stopped_at_the_call_past_the_run(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("max_sequential_destinations = 3")
    for n in ("5551000", "5551001", "5551007", "5551008", "5551009", "5552000", "5551001"):
        fs.create_call("office", dest=n)
    calls = [fs.create_call("dialer", dest=f"+4420794600{i:02d}") for i in range(5)]
    assert wait_for(lambda: killed(fs) == calls[3:])
    assert all(u in fs.calls() for u in calls[:3])


def test_distinct_destinations_over_the_window(h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("max_distinct_destinations = 5/1m")
    for i in range(12):  # 12 calls to 3 numbers
        fs.create_call("friend", dest=f"55510{i % 3}")
    calls = [fs.create_call("spam", dest=f"7000{i}") for i in range(6)]
    redial = fs.create_call("spam", dest="70000")
    assert wait_for(lambda: tracked(h, redial))
    # the uuid_kill is sent before the redial is read, but reaches the simulator a moment later
    assert wait_for(lambda: killed(fs) == [calls[5]])


def test_a_new_source_address_over_the_limit_is_hung_up(h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("max_source_ips = 2/1h")
    for i in range(10):  # home and mobile
        fs.create_call("alice", source_ip=("192.0.2.10", "198.51.100.20")[i % 2])
    shared = [fs.create_call("bob", source_ip=ip) for ip in
              ("192.0.2.10", "198.51.100.20", "192.0.2.10", "203.0.113.30")]
    assert wait_for(lambda: killed(fs) == [shared[3]])


def test_calls_to_a_hosted_server_over_the_limit(h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("inbound_contexts = public\nmax_inbound_concurrent_calls = 2")
    out = [fs.create_call("home", context="default") for _ in range(5)]  # its own calls
    inbound = [fs.create_call("home", context="public") for _ in range(3)]
    assert wait_for(lambda: killed(fs) == [inbound[2]])
    assert all(u in fs.calls() for u in out + inbound[:2])
    fs.hangup(inbound[0])
    again = fs.create_call("home", context="public")
    assert wait_for(lambda: tracked(h, again)) and killed(fs) == [inbound[2]]


def test_warn_only_touches_no_call(h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("caller_id_allowed = 1*\nmax_sequential_destinations = 1\nlock_after = 1/1m\n"
            "inbound_contexts = public\nmax_inbound_concurrent_calls = 0\n"
            "warn_only = caller_id_allowed max_sequential_destinations "
            "max_inbound_concurrent_calls")
    calls = [fs.create_call("acme", caller_id="999", dest=f"55{i}", context="public")
             for i in range(3)]
    assert wait_for(lambda: all(tracked(h, u) for u in calls))
    assert h.daemon is not None
    assert wait_for(lambda: h.daemon.guard.tracker.active("acme") == 3)
    assert fs.kills == [] and not h.daemon.guard.tracker.locks
    rows = audit(h)
    assert {r["kind"] for r in rows} == {"warn"}
    assert sorted({(r["rule"], r["clause"]) for r in rows}) == [
        ("caller_id_allowed", "impersonation"), ("max_inbound_concurrent_calls", "hosting"),
        ("max_sequential_destinations", "mass_calling")]


def test_the_webhook_gets_the_lock_signed(h: Harness, fs: FakeFreeSWITCH) -> None:
    receiver = Receiver().start()
    try:
        h.start("max_call_rate = 2/1m\nlock_after = 2/1m",
                extra=f"[notify]\nwebhook = {receiver.url}\nsecret = k3y\n")
        for _ in range(4):
            fs.create_call("dialer")
        assert wait_for(lambda: any(d["kind"] == "lock" for d in receiver.docs()))
        lock = next(d for d in receiver.docs() if d["kind"] == "lock")
        assert lock["account"] == "dialer" and lock["clause"] == "denial_of_service"
        assert lock["rule"] == "lock_after" and receiver.signed("k3y")
    finally:
        receiver.stop()
