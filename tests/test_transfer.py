"""Issue 11, item 16: after an attended transfer the remaining legs stay attributed to the
account, for concurrency and duration.  The event stream is the real one of
tests/fixtures/esl/plain_att_xfer.bin (att_xfer on FreeSWITCH 1.10.12): A (acct1) calls B1,
A originates B2, A hangs up, B1 is bridged to B2; then esl-guard's `uuid_kill <B1>` ends both."""
from __future__ import annotations

from esl_guard.model import ActionKind, CallEvent, ChannelRow, Limits, Rule
from esl_guard.policy import carries_on
from esl_guard.resync import parse_channels
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.tracker import Tracker
from tests.harness import Harness, wait_for
from tests.test_events import call_events
from tests.test_resync import api_bodies

WALL = 1_800_000_000.0
EVENTS = call_events("plain_att_xfer.bin")
A_LEG = EVENTS[0].uuid
B1, B2 = dict.fromkeys(e.uuid for e in EVENTS if e.b_leg)
A_END = next(i for i, e in enumerate(EVENTS) if e.uuid == A_LEG and e.name == "CHANNEL_HANGUP")
B1_END = next(i for i, e in enumerate(EVENTS) if e.uuid == B1 and e.name == "CHANNEL_HANGUP")


def feed(tr: Tracker, events: list[CallEvent], start: int = 0) -> list:
    """Each event at its index (seconds on the monotonic clock)."""
    actions = []
    for i, e in enumerate(events, start):
        actions += tr.on_event(e, float(i))
        actions += tr.tick(float(i))
    return actions


def test_the_capture_is_an_attended_transfer() -> None:
    """What the tracker sees of it: two B-legs of A, and A's end while both are up."""
    assert [e.other_leg for e in EVENTS if e.uuid in (B1, B2) and e.name == "CHANNEL_CREATE"] \
        == [A_LEG, A_LEG]
    assert not any(e.account for e in EVENTS if e.uuid in (B1, B2))
    ends = [e.uuid for e in EVENTS if e.name == "CHANNEL_HANGUP"]
    assert ends == [A_LEG, B1, B2]
    assert A_END < B1_END


def test_the_transferred_call_keeps_counting_until_its_last_leg_ends() -> None:
    tr = Tracker(lambda a: Limits(max_concurrent_calls=1), lambda: WALL)
    actions = feed(tr, EVENTS[:A_END + 1])
    assert tr.active("acct1") == 1, "after A's end, B1 and B2 are the call"
    actions += feed(tr, EVENTS[A_END + 1:B1_END + 1], A_END + 1)
    assert tr.active("acct1") == 1, "B2 is still up"
    actions += feed(tr, EVENTS[B1_END + 1:], B1_END + 1)
    assert tr.active("acct1") == 0
    assert tr.tracked_channels() == 0
    assert not [a for a in actions if a.kind is ActionKind.HANGUP]


def test_a_new_call_of_the_account_is_refused_while_the_transferred_call_is_up() -> None:
    """limit 1: the transferred call still holds the account's slot."""
    tr = Tracker(lambda a: Limits(max_concurrent_calls=1), lambda: WALL)
    feed(tr, EVENTS[:A_END + 1])
    now = float(A_END + 1)
    new = CallEvent("CHANNEL_CREATE", "fs1", "0c9b6c5e-0000-4000-8000-000000000001", "acct1")
    actions = tr.on_event(new, now)
    hangups = [a for a in actions if a.kind is ActionKind.HANGUP]
    assert [(a.uuid, a.rule) for a in hangups] == [(new.uuid, Rule.CONCURRENCY)]
    assert tr.active("acct1") == 1


def test_max_call_duration_hangs_up_the_transferred_call() -> None:
    """The duration timer armed at A's answer goes on with the call and kills a remaining
    leg (killing B1 ends B2 too, as the capture shows)."""
    answer = next(i for i, e in enumerate(EVENTS)
                  if e.uuid == A_LEG and e.name == "CHANNEL_ANSWER")
    limit = A_END - answer + 0.5  # due after A's end, before the legs end
    tr = Tracker(lambda a: Limits(max_call_duration=limit), lambda: WALL)
    assert not [a for a in feed(tr, EVENTS[:A_END + 1]) if a.kind is ActionKind.HANGUP]
    actions = tr.tick(A_END + 1.0)
    hangups = [a for a in actions if a.kind is ActionKind.HANGUP]
    assert [(a.uuid, a.rule, a.account) for a in hangups] == [(B1, Rule.DURATION, "acct1")]
    assert tr.active("acct1") == 0
    assert not feed(tr, EVENTS[A_END + 1:], A_END + 1), "its legs' ends change nothing more"
    assert tr.tracked_channels() == 0


def test_a_plain_bridged_call_ends_with_its_b_leg() -> None:
    """plain_bridged.bin: A's HANGUP comes first, its B-leg's at once after it; the call counts
    until then and nothing is left afterwards.  acct1 had two calls up at once (the third
    began as the first ended): limit 2 refuses none of them."""
    tr = Tracker(lambda a: Limits(max_concurrent_calls=2), lambda: WALL)
    events = call_events("plain_bridged.bin")
    actions = feed(tr, events)
    assert not [a for a in actions if a.kind is ActionKind.HANGUP]
    assert tr.live_calls() == 0 and tr.tracked_channels() == 0


def test_a_transferred_call_is_kept_by_a_resync_that_lists_its_legs_only() -> None:
    """A's end lost (a link down): the next channel list has B1 and B2, not A; the call
    goes on in them, and ends when the list no longer has them."""
    tr = Tracker(lambda a: Limits(max_concurrent_calls=1), lambda: WALL)
    feed(tr, [e for e in EVENTS[:A_END] if e.name != "CHANNEL_HANGUP"])
    rows = [ChannelRow(B1, None, True, True, 10.0), ChannelRow(B2, None, False, True, 6.0)]
    added, dropped, _ = tr.resync("fs1", rows, 100.0, asked=100.0)
    assert (added, dropped) == (0, 0)
    assert tr.active("acct1") == 1
    tr.resync("fs1", [], 200.0, asked=200.0)
    assert tr.active("acct1") == 0 and tr.tracked_channels() == 0


def test_carries_on() -> None:
    assert carries_on(True, 2)
    assert not carries_on(True, 0)
    assert not carries_on(False, 1)  # refused or hung up by esl-guard: nothing to attribute


# -- over real TCP: the daemon against the simulator replaying the same transfer ----------------

def test_over_tcp_the_transferred_call_still_counts(h: Harness, fs: FakeFreeSWITCH) -> None:
    """limit 1: after the transfer a new call of the account is refused; once the transferred
    call ends, the next one is admitted."""
    h.start("max_concurrent_calls = 1")
    a = fs.create_call("acme", account_on="answer")
    b1 = fs.bridge(a)
    b2 = fs.attended_transfer(a)
    tracker = h.daemon.guard.tracker
    assert wait_for(lambda: a in tracker.ended.get("default", {}))
    assert tracker.active("acme") == 1
    refused = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(refused))
    assert {b1, b2} <= set(fs.calls()) and fs.kills == [(refused, "CALL_REJECTED")]
    fs.hangup(b2)
    assert wait_for(lambda: tracker.active("acme") == 0)
    admitted = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: tracker.active("acme") == 1)
    assert admitted in fs.calls() and not h.killed(admitted)


def test_over_tcp_max_call_duration_hangs_up_the_transferred_call(h: Harness,
                                                                   fs: FakeFreeSWITCH) -> None:
    h.start("max_call_duration = 2s")
    a = fs.create_call("acme", account_on="answer")
    b1 = fs.bridge(a)
    b2 = fs.attended_transfer(a)
    assert wait_for(lambda: h.killed(b1), timeout=5)
    assert fs.kills == [(b1, "CALL_REJECTED")]
    assert wait_for(lambda: not {b1, b2} & set(fs.calls()))
    assert h.daemon is not None
    assert wait_for(lambda: any(r["kind"] == "hangup" for r in h.daemon.store.audit()))
    rows = [r for r in h.daemon.store.audit() if r["kind"] == "hangup"]
    assert [(r["uuid"], r["rule"], r["account"]) for r in rows] == [
        (b1, "max_call_duration", "acme")]


def test_a_call_found_up_with_its_b_leg_goes_on_after_a_later_transfer() -> None:
    """The daemon (re)started while A and B1 were up: its resync adopts A and notes B1 as A's
    leg (B1's call_uuid is A), so a transfer that follows keeps the call counted in B1 (B2's
    events left out: a B2 originated by a PBX over ESL is no leg of A)."""
    tr = Tracker(lambda a: Limits(max_concurrent_calls=1), lambda: WALL)
    rows = [ChannelRow(B1, None, True, True, 5.0, parent=A_LEG),  # listed before its call
            ChannelRow(A_LEG, "acct1", False, True, 5.0)]
    assert tr.resync("fs1", rows, 0.0)[0] == 1
    later = [e for e in EVENTS[:B1_END] if e.uuid != B2]
    feed(tr, later)
    assert tr.active("acct1") == 1, "the transferred call no longer counts"
    feed(tr, [e for e in EVENTS[B1_END:] if e.uuid != B2], B1_END)
    assert tr.active("acct1") == 0 and tr.tracked_channels() == 0


def test_the_b_legs_of_a_real_channel_list_name_their_call() -> None:
    """plain_bridged.bin's `show channels`: each B-leg row's call_uuid is its A-leg."""
    body = next(b for b in api_bodies("plain_bridged.bin") if '"row_count":4' in b)
    rows = parse_channels(body, WALL)
    a_legs = {r.uuid for r in rows if not r.b_leg}
    assert len(a_legs) == 2
    assert sorted(r.parent in a_legs for r in rows if r.b_leg) == [True, True]
    assert all(r.parent is None for r in rows if not r.b_leg)
