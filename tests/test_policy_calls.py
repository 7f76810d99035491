"""Table tests of esl_guard.policy.calls (lagging lists, lost nodes, deferred hangups, idle
accounts), and the tracker applying them, with explicit clocks."""
from __future__ import annotations

from pathlib import Path

import pytest

from esl_guard.model import ActionKind, CallEvent, ChannelRow, Limits, Rate, Rule
from esl_guard.policy import (
    ACCOUNT_IDLE,
    answered_ago,
    due_hangups,
    ended_horizon,
    keeps_unlisted,
    needs_answer_time,
    node_lost,
    recheck_after,
    release_at,
    restarted,
    still_due,
    violation_counts_now,
)
from esl_guard.policy.calls import ENDED_MARGIN, UNLISTED_GRACE
from esl_guard.resync import answered_time, parse_channels
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.tracker import Tracker

U = [f"00000000-0000-4000-8000-{i:012d}" for i in range(20)]
G = UNLISTED_GRACE


@pytest.mark.parametrize(("first_seen", "asked", "kept"), [
    (100.0, 100.0 + G - 0.1, True),      # seen just before the ask: the list may lag
    (100.0, 100.0 + G, False),           # seen long enough before: the list is right
    (100.0, 50.0, True),                 # seen after the ask
    (None, 100.0, False),                # never seen by its events (adopted): the list rules
    (100.0, None, False),                # an authoritative empty list (node removed)
])
def test_keeps_unlisted(first_seen: float | None, asked: float | None, kept: bool) -> None:
    assert keeps_unlisted(first_seen, asked) is kept


@pytest.mark.parametrize(("before", "now", "yes"), [
    (U[0], U[1], True),     # a new Core-UUID: a new run of FreeSWITCH
    (U[0], U[0], False),    # the same run: only the link was down
    (None, U[1], False),    # the first connect
    (U[0], None, False),    # a peer that does not say: no conclusion
])
def test_restarted(before: str | None, now: str | None, yes: bool) -> None:
    assert restarted(before, now) is yes


@pytest.mark.parametrize(("down_since", "now", "after", "lost"), [
    (None, 1000.0, 60.0, False),   # up
    (100.0, 159.9, 60.0, False),
    (100.0, 160.0, 60.0, True),
    (100.0, 100.0, 0.0, True),
])
def test_node_lost(down_since: float | None, now: float, after: float, lost: bool) -> None:
    assert node_lost(down_since, now, after) is lost


def test_ended_horizon_covers_the_slowest_answer() -> None:
    assert ended_horizon(60.0) == 60.0 + ENDED_MARGIN


@pytest.mark.parametrize(("kept", "interval", "delay"), [
    (0, 60.0, 60.0), (3, 60.0, G + 1.0), (3, 2.0, 2.0)])
def test_recheck_after(kept: int, interval: float, delay: float) -> None:
    assert recheck_after(kept, interval) == delay


def test_due_hangups_only_for_listed_calls() -> None:
    deferred = {"u1": ["v1", "h1"], "u2": ["h2"], "u3": ["h3"]}
    assert due_hangups(deferred, {"u1", "u3", "x"}) == (["v1", "h1", "h3"], ["u2"])
    assert due_hangups({}, {"u1"}) == ([], [])


@pytest.mark.parametrize(("rule", "locked", "answered", "limits", "due"), [
    (Rule.LOCKED, True, None, Limits(), True),
    (Rule.LOCKED, False, None, Limits(), False),               # unlocked or expired meanwhile
    (Rule.LOCKED, True, None, Limits(dry_run=True), False),    # reloaded to a dry run
    (Rule.DURATION, False, 0.0, Limits(max_call_duration=30.0), True),
    (Rule.DURATION, False, 0.0, Limits(max_call_duration=90.0), False),  # limit raised
    (Rule.DURATION, False, 0.0, Limits(), False),                        # limit removed
    (Rule.DURATION, False, None, Limits(max_call_duration=90.0), True),  # age unknown
    (Rule.CONCURRENCY, False, None, Limits(), True),           # admission decisions stand
])
def test_still_due(rule: Rule, locked: bool, answered: float | None, limits: Limits,
                   due: bool) -> None:
    assert still_due(rule, locked, answered, limits, 60.0) is due


@pytest.mark.parametrize(("creations", "violations", "limits", "at"), [
    ((), (), Limits(), 100 + ACCOUNT_IDLE),
    ((90.0,), (), Limits(max_call_rate=Rate(5, 3600)), 90 + 3600),   # window still matters
    ((90.0,), (), Limits(max_call_rate=Rate(5, 60)), 100 + ACCOUNT_IDLE),
    ((90.0,), (), Limits(), 100 + ACCOUNT_IDLE),                      # no rate limit: moot
    ((), (95.0,), Limits(lock_after=Rate(3, 86400)), 95 + 86400),
    ((), (95.0,), Limits(), 100 + ACCOUNT_IDLE),
])
def test_release_at(creations: tuple[float, ...], violations: tuple[float, ...],
                    limits: Limits, at: float) -> None:
    assert release_at(100.0, creations, violations, limits) == at


# ---------------------------------------------------------------- the tracker applying them
def make(limits: Limits) -> Tracker:
    return Tracker(lambda a: limits, lambda: 1_800_000_000.0)


def ev(name: str, i: int, account: str | None = "a", node: str = "fs1") -> CallEvent:
    return CallEvent(name, node, U[i], account)


@pytest.mark.parametrize("late", ["CHANNEL_PROGRESS_MEDIA", "CHANNEL_PROGRESS",
                                  "CHANNEL_ANSWER", "CHANNEL_CREATE"])
def test_a_late_event_does_not_revive_an_ended_call(late: str) -> None:
    tr = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_HANGUP", 0), 1)
    tr.on_event(ev("CHANNEL_HANGUP_COMPLETE", 0), 1)
    assert tr.on_event(ev(late, 0), 2) == []
    assert tr.active("a") == 0 and U[0] not in tr.nodes["fs1"]
    assert tr.on_event(ev("CHANNEL_CREATE", 1), 3) == []


def test_a_lagging_list_neither_revives_an_ended_call_nor_drops_a_new_one() -> None:
    tr = make(Limits())
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_HANGUP", 0), 10)
    tr.on_event(ev("CHANNEL_CREATE", 1), 20)
    stale = [ChannelRow(U[0], "a", False, True, 30.0)]  # computed before both events
    assert tr.resync("fs1", stale, 22, asked=21) == (0, 0, [])
    assert set(tr.nodes["fs1"]) == {U[1]} and tr.unlisted_kept == 1
    tr.resync("fs1", [], 40, asked=20 + G)  # asked long enough after it began: gone
    assert tr.nodes["fs1"] == {} and tr.active("a") == 0


def test_ends_are_forgotten_after_the_horizon() -> None:
    tr = make(Limits())
    tr.ended_memory = 100.0
    tr.on_event(ev("CHANNEL_HANGUP", 0), 0)
    tr.on_event(ev("CHANNEL_HANGUP", 1), 50)
    tr.prune(120)
    assert list(tr.ended["fs1"]) == [U[1]]


def test_a_lost_node_stops_counting_and_its_resync_adopts_the_calls_again() -> None:
    tr = make(Limits(max_concurrent_calls=2, max_call_duration=60.0))
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_ANSWER", 0), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1, node="fs2"), 0)
    assert tr.forget_node("fs1", 10) == 1
    assert tr.active("a") == 1 and tr.timers_armed() == 0
    assert tr.on_event(ev("CHANNEL_CREATE", 2, node="fs2"), 11) == []
    added, _, actions = tr.resync("fs1", [ChannelRow(U[0], "a", False, True, 20.0)], 20)
    assert (added, actions, tr.active("a")) == (1, [], 3)  # adopted: never hung up


def test_deferred_hangups_are_returned_for_calls_still_up_only() -> None:
    tr = make(Limits(max_call_duration=5.0))
    for i in (0, 1):
        tr.on_event(ev("CHANNEL_CREATE", i), 0)
        tr.on_event(ev("CHANNEL_ANSWER", i), 0)
    actions = tr.tick(6)
    assert sorted(a.uuid for a in actions if a.kind is ActionKind.HANGUP) == [U[0], U[1]]
    for a in actions:  # the service defers them: the link of fs1 is down
        tr.defer(a)
    tr.forget_node("fs1", 30)  # and it was lost meanwhile
    _, _, due = tr.resync("fs1", [ChannelRow(U[0], "a", False, True, 40.0)], 40)
    assert [(a.kind, a.uuid) for a in due] == [(ActionKind.VIOLATION, U[0]),
                                               (ActionKind.HANGUP, U[0])]
    assert tr.active("a") == 0 and tr.nodes["fs1"][U[0]].doomed and tr.deferred_gone == 1
    assert tr.resync("fs1", [ChannelRow(U[0], "a", False, True, 41.0)], 41)[2] == []


@pytest.mark.parametrize(("dry_run", "reachable", "now"), [
    (False, True, True), (False, False, False), (True, False, True), (True, True, True)])
def test_violation_counts_now(dry_run: bool, reachable: bool, now: bool) -> None:
    assert violation_counts_now(dry_run, reachable) is now


def held_violations(listed: bool) -> tuple[Tracker, list, list]:
    """lock_after 2/60: U0 on fs1 (unreachable) and U1 on fs2 pass their duration limit at
    once; the hangup of U0 is held.  Then fs1's resync, listing U0 or not."""
    tr = make(Limits(max_call_duration=5.0, lock_after=Rate(2, 60)))
    tr.reachable = lambda node: node != "fs1"
    for i, node in ((0, "fs1"), (1, "fs2")):
        tr.on_event(ev("CHANNEL_CREATE", i, node=node), 0)
        tr.on_event(ev("CHANNEL_ANSWER", i, node=node), 0)
    decided = tr.tick(6)
    for a in decided:
        if a.node == "fs1":
            tr.defer(a)  # what the service does while fs1's link is down
    tr.reachable = lambda node: True
    rows = [ChannelRow(U[0], "a", False, True, 20.0)] if listed else []
    return tr, decided, tr.resync("fs1", rows, 20, asked=20)[2]


def test_a_held_violation_counts_toward_lock_after_only_when_carried_out() -> None:
    tr, decided, due = held_violations(listed=True)
    assert ActionKind.LOCK not in {a.kind for a in decided}, \
        "a violation whose hangup is held earned a lock before it was carried out"
    assert [(a.kind, a.uuid) for a in due] == [(ActionKind.VIOLATION, U[0]),
                                               (ActionKind.HANGUP, U[0]),
                                               (ActionKind.LOCK, None)]
    assert tr.is_locked("a")
    assert all(not a.extra for a in due if a.kind is ActionKind.VIOLATION)


def test_a_held_violation_of_a_call_that_ended_meanwhile_never_counts() -> None:
    tr, decided, due = held_violations(listed=False)
    assert due == [] and tr.deferred_gone == 1 and not tr.is_locked("a")
    assert tr.accounts["a"].violations == [6.0]  # U1's only
    # the next violation is the second in the window, not the third
    tr.on_event(ev("CHANNEL_CREATE", 2, node="fs2"), 30)
    tr.on_event(ev("CHANNEL_ANSWER", 2, node="fs2"), 30)
    assert [a.kind for a in tr.tick(36)] == [ActionKind.VIOLATION, ActionKind.HANGUP,
                                             ActionKind.LOCK]


def test_a_call_adopted_then_ended_while_its_node_was_down_stops_counting() -> None:
    """Known only from a channel list, it gets no grace when a later list omits it, however
    soon after its adoption that list comes (two reconnects within UNLISTED_GRACE)."""
    tr = make(Limits(max_concurrent_calls=1))
    assert tr.resync("fs1", [ChannelRow(U[0], "a", False, True, 30.0)], 10, asked=10)[0] == 1
    assert tr.active("a") == 1
    tr.forget_node("fs1", 11)  # the link goes down again; the call ends meanwhile
    tr.resync("fs1", [ChannelRow(U[0], "a", False, True, 31.0)], 11, asked=11)
    assert tr.active("a") == 1
    tr.resync("fs1", [], 12, asked=12)
    assert tr.active("a") == 0 and tr.nodes["fs1"] == {} and tr.unlisted_kept == 0


def test_calls_the_switch_no_longer_has_end_even_within_the_grace() -> None:
    """After a reconnect the service asks uuid_exists about the calls the first list omitted
    but kept; those gone end (and a lagging list never brings them back)."""
    tr = make(Limits(max_concurrent_calls=2))
    tr.on_event(ev("CHANNEL_CREATE", 0), 10)
    tr.on_event(ev("CHANNEL_CREATE", 1), 10)
    tr.resync("fs1", [], 11, asked=11)
    assert tr.unlisted == [U[0], U[1]] and tr.unlisted_kept == 2
    assert tr.gone("fs1", [U[0], U[5]], 12) == 1  # U5: not a call of fs1
    assert tr.unlisted == [U[1]] and tr.unlisted_kept == 1 and tr.active("a") == 1
    stale = [ChannelRow(U[0], "a", False, True, 5.0), ChannelRow(U[1], "a", False, True, 5.0)]
    tr.resync("fs1", stale, 13, asked=13)
    assert tr.active("a") == 1 and set(tr.nodes["fs1"]) == {U[1]}


def test_idle_accounts_are_forgotten_incrementally() -> None:
    asked: list[str] = []

    def limits_for(account: str) -> Limits:
        asked.append(account)
        return Limits()

    tr = Tracker(limits_for, lambda: 1_800_000_000.0)
    tr.on_event(CallEvent("CHANNEL_CREATE", "fs1", U[0], "old"), 0)
    tr.on_event(CallEvent("CHANNEL_HANGUP", "fs1", U[0], "old"), 1)
    for i in range(5000):  # accounts that went idle later
        tr.on_event(CallEvent("CHANNEL_CREATE", "fs1", f"u{i}", f"acct{i}"), 100)
        tr.on_event(CallEvent("CHANNEL_HANGUP", "fs1", f"u{i}", f"acct{i}"), 100)
    asked.clear()
    assert tr.prune(1 + ACCOUNT_IDLE) == 1  # only "old" is due: the others are not visited
    assert asked == ["old"] and "old" not in tr.accounts and len(tr.accounts) == 5000
    assert tr.prune(100 + ACCOUNT_IDLE) == 5000 and tr.accounts == {}


def test_an_account_busy_again_is_kept() -> None:
    tr = make(Limits())
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_HANGUP", 0), 1)
    tr.on_event(ev("CHANNEL_CREATE", 1), 50)
    assert tr.prune(1 + ACCOUNT_IDLE) == 0 and tr.active("a") == 1
    tr.on_event(ev("CHANNEL_HANGUP", 1), 60)
    assert tr.prune(59 + ACCOUNT_IDLE) == 0
    assert tr.prune(60 + ACCOUNT_IDLE) == 1




@pytest.mark.parametrize(("answered", "b_leg", "timed", "limits", "needed"), [
    (True, False, False, Limits(max_call_duration=60.0), True),
    (False, False, False, Limits(max_call_duration=60.0), False),  # ringing: nothing to time
    (True, True, False, Limits(max_call_duration=60.0), False),    # a B-leg is no call
    (True, False, True, Limits(max_call_duration=60.0), False),    # its answer was seen
    (True, False, False, Limits(), False),                          # no duration limit
])
def test_needs_answer_time(answered: bool, b_leg: bool, timed: bool, limits: Limits,
                           needed: bool) -> None:
    assert needs_answer_time(answered, b_leg, timed, limits) is needed


@pytest.mark.parametrize(("age", "answered_at", "wall", "ago"), [
    (30.0, None, 1000.0, 30.0),       # unknown: from its creation
    (30.0, 990.5, 1000.0, 9.5),       # from its answer, to the µs
    (30.0, 1000.2, 1000.0, 0.0),      # clocks a little apart: never negative
])
def test_answered_ago(age: float, answered_at: float | None, wall: float, ago: float) -> None:
    assert answered_ago(age, answered_at, wall) == pytest.approx(ago)


def _api_bodies(raw: bytes) -> list[bytes]:
    """The api/response bodies of a capture, in order."""
    out = []
    pos = 0
    while True:
        i = raw.find(b"Content-Type: api/response\nContent-Length: ", pos)
        if i < 0:
            return out
        j = raw.index(b"\n\n", i)
        n = int(raw[i:j].rsplit(b" ", 1)[1])
        out.append(raw[j + 2:j + 2 + n])
        pos = j + 2 + n


def test_answer_time_of_a_real_uuid_dump() -> None:
    raw = (Path(__file__).parent / "fixtures/esl/uuid_dump_answered.bin").read_bytes()
    bodies = _api_bodies(raw)
    listed = [b for b in bodies if b.startswith(b'{"row_count"')]
    dump, dump_json, gone = bodies[len(listed):]
    assert answered_time(dump.decode()) == 1795923660.403928
    assert answered_time(gone.decode()) is None and gone == b"-ERR No such channel!\n"
    assert b'"Caller-Channel-Answered-Time":"1795923660403928"' in dump_json
    rows = parse_channels(listed[-1].decode(), 1795923661.0)
    assert rows[0].answered and rows[0].age == 3.0  # created_epoch: whole seconds only


def test_the_simulator_answers_uuid_dump_like_freeswitch() -> None:
    raw = (Path(__file__).parent / "fixtures/esl/uuid_dump_answered.bin").read_bytes()
    real = next(b for b in _api_bodies(raw) if b.startswith(b"Event-Name: CHANNEL_DATA"))
    fs = FakeFreeSWITCH()
    u = fs.create_call("acme")
    ringing = fs.dump(fs.channel(u))
    fs.answer(u)
    dumped = fs.dump(fs.channel(u))
    assert answered_time(ringing.decode()) is None
    assert answered_time(dumped.decode()) == fs.channel(u).answered_us / 1e6

    def keys(body: bytes) -> list[bytes]:
        return [line.partition(b": ")[0] for line in body.split(b"\n")[:80]]
    assert keys(dumped)[:14] == keys(real)[:14] and dumped.endswith(b"\n\n")
    for key in (b"Event-Name", b"Event-Calling-Function", b"Answer-State"):
        assert _line(dumped, key) == _line(real, key)


def _line(body: bytes, key: bytes) -> bytes:
    return next(line for line in body.split(b"\n") if line.startswith(key + b": "))


def test_ends_are_forgotten_by_the_ticker_even_when_no_account_is_idle() -> None:
    tr = make(Limits())
    tr.ended_memory = 100.0
    tr.on_event(ev("CHANNEL_CREATE", 1), 0)  # busy for good: nothing in the idle queue is due
    tr.on_event(ev("CHANNEL_HANGUP", 0), 0)
    tr.tick(50)
    assert U[0] in tr.ended["fs1"]
    tr.tick(101)
    assert U[0] not in tr.ended["fs1"]
