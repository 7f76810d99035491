"""The enforcement core with an explicit clock: no sockets, no sleeping."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from esl_guard.model import ActionKind, CallEvent, ChannelRow, Limits, Lock, Rate, Rule
from esl_guard.tracker import Tracker

U = [f"00000000-0000-4000-8000-{i:012d}" for i in range(200)]


class Clock:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0

    def __call__(self) -> float:
        return self.wall


def make(policy: Limits, **accounts: Limits) -> tuple[Tracker, Clock]:
    clock = Clock()
    return Tracker(lambda a: accounts.get(a, policy), clock), clock


def ev(name: str, i: int, account: str | None = None, node: str = "fs1", b_leg: bool = False
       ) -> CallEvent:
    return CallEvent(name, node, U[i], account, b_leg)


def hangups(actions: list) -> list[str]:
    return [a.uuid for a in actions if a.kind is ActionKind.HANGUP]


def test_third_concurrent_call_is_hung_up_not_an_older_one() -> None:
    tr, _ = make(Limits(), acme=Limits(max_concurrent_calls=2))
    assert tr.on_event(ev("CHANNEL_CREATE", 0, "acme"), 0) == []
    assert tr.on_event(ev("CHANNEL_CREATE", 1, "acme"), 1) == []
    actions = tr.on_event(ev("CHANNEL_CREATE", 2, "acme"), 2)
    assert hangups(actions) == [U[2]]
    v = actions[0]
    assert (v.kind, v.rule, v.limit, v.observed) == (ActionKind.VIOLATION, Rule.CONCURRENCY, "2", "3")
    assert actions[1].cause == "CALL_REJECTED"
    assert tr.active("acme") == 2


def test_a_freed_slot_can_be_reused() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    tr.on_event(ev("CHANNEL_HANGUP", 0, "a"), 1)
    assert tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 2) == []
    assert tr.active("a") == 1


def test_killed_call_does_not_hold_a_slot_and_its_hangup_does_not_free_one() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 1)) == [U[1]]
    tr.on_event(ev("CHANNEL_HANGUP_COMPLETE", 1, "a"), 2)
    assert tr.active("a") == 1
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 2, "a"), 3)) == [U[2]]


def test_account_learned_late_is_enforced_from_that_event() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1), 0)
    assert tr.active("a") == 0
    assert tr.on_event(ev("CHANNEL_ANSWER", 0, "a"), 1) == []
    assert hangups(tr.on_event(ev("CHANNEL_ANSWER", 1, "a"), 2)) == [U[1]]


def test_bridged_b_leg_is_not_a_second_call() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1, "a", b_leg=True), 0)
    tr.on_event(ev("CHANNEL_ANSWER", 1, "a", b_leg=True), 1)
    assert tr.on_event(ev("CHANNEL_ANSWER", 0, "a"), 1) == []
    assert tr.active("a") == 1
    tr.on_event(ev("CHANNEL_HANGUP_COMPLETE", 1, "a", b_leg=True), 5)
    assert tr.active("a") == 1
    tr.on_event(ev("CHANNEL_HANGUP_COMPLETE", 0, "a"), 6)
    assert tr.active("a") == 0


def test_rate_is_a_sliding_window() -> None:
    tr, _ = make(Limits(max_call_rate=Rate(3, 60)))
    for i, t in enumerate([0, 10, 20]):
        assert tr.on_event(ev("CHANNEL_CREATE", i, "a"), t) == []
    actions = tr.on_event(ev("CHANNEL_CREATE", 3, "a"), 30)
    assert hangups(actions) == [U[3]] and actions[0].rule is Rule.RATE
    assert actions[0].observed == "4/1m"
    # 0 and 10 leave the window at 60 and 70; 20, 30 are still in it: one more fits at 70.1.
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 4, "a"), 60.5)) == [U[4]]
    assert tr.on_event(ev("CHANNEL_CREATE", 5, "a"), 80.5) == []


def test_no_burst_across_a_fixed_window_boundary() -> None:
    tr, _ = make(Limits(max_call_rate=Rate(2, 60)))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 59)
    tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 59.5)
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 2, "a"), 60.5)) == [U[2]]


def test_duration_limit_fires_at_the_deadline_and_only_once() -> None:
    tr, _ = make(Limits(max_call_duration=2.0))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    tr.on_event(ev("CHANNEL_ANSWER", 0, "a"), 10)
    assert tr.tick(11.9) == []
    actions = tr.tick(12.0)
    assert hangups(actions) == [U[0]] and actions[0].rule is Rule.DURATION
    assert tr.tick(20) == []


def test_duration_counts_from_answer_and_ignores_ended_calls() -> None:
    tr, _ = make(Limits(max_call_duration=5.0))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    assert tr.tick(100) == []  # never answered: ringing is not talk time
    tr.on_event(ev("CHANNEL_ANSWER", 0, "a"), 100)
    tr.on_event(ev("CHANNEL_HANGUP", 0, "a"), 103)
    assert tr.tick(200) == []


def test_call_answered_before_its_account_is_known_still_gets_a_duration_limit() -> None:
    tr, _ = make(Limits(max_call_duration=5.0))
    tr.on_event(ev("CHANNEL_ANSWER", 0), 10)
    tr.on_event(ev("CHANNEL_HANGUP", 1), 11)
    tr.on_event(CallEvent("CHANNEL_PROGRESS", "fs1", U[0], "a"), 12)
    assert hangups(tr.tick(15)) == [U[0]]


def test_lowering_the_duration_limit_on_reload_applies_to_live_calls() -> None:
    limits = {"a": Limits(max_call_duration=3600.0)}
    tr = Tracker(lambda a: limits[a], Clock())
    tr.on_event(ev("CHANNEL_ANSWER", 0, "a"), 0)
    limits["a"] = Limits(max_call_duration=10.0)
    tr.retime(0.0)
    assert hangups(tr.tick(10)) == [U[0]]


def test_raising_the_concurrency_limit_takes_effect_at_once() -> None:
    limits = {"a": Limits(max_concurrent_calls=1)}
    tr = Tracker(lambda a: limits[a], Clock())
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    limits["a"] = Limits(max_concurrent_calls=2)
    assert tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 1) == []


def test_dry_run_decides_and_records_but_flags_it() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1, dry_run=True))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    actions = tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 1)
    assert hangups(actions) == [U[1]] and all(a.dry_run for a in actions)


def test_lock_after_locks_kills_live_calls_and_refuses_new_ones() -> None:
    tr, clock = make(Limits(), acme=Limits(max_concurrent_calls=1, lock_after=Rate(2, 60),
                                           lock_duration=600))
    tr.on_event(ev("CHANNEL_CREATE", 0, "acme"), 0)
    first = tr.on_event(ev("CHANNEL_CREATE", 1, "acme"), 1)
    assert [a.kind for a in first] == [ActionKind.VIOLATION, ActionKind.HANGUP]
    second = tr.on_event(ev("CHANNEL_CREATE", 2, "acme"), 2)
    kinds = [a.kind for a in second]
    assert kinds == [ActionKind.VIOLATION, ActionKind.HANGUP, ActionKind.LOCK, ActionKind.HANGUP]
    assert second[2].until == clock.wall + 600
    assert second[3].uuid == U[0] and second[3].rule is Rule.LOCKED
    assert tr.is_locked("acme") and tr.active("acme") == 0
    refused = tr.on_event(ev("CHANNEL_CREATE", 3, "acme"), 3)
    assert hangups(refused) == [U[3]] and refused[0].rule is Rule.LOCKED
    clock.wall += 601
    unlock = tr.tick(700)
    assert [a.kind for a in unlock] == [ActionKind.UNLOCK] and not tr.is_locked("acme")
    assert tr.on_event(ev("CHANNEL_CREATE", 4, "acme"), 701) == []


def test_lock_escalation_is_capped() -> None:
    tr, clock = make(Limits(max_concurrent_calls=0, lock_after=Rate(1, 60), lock_duration=60,
                            lock_escalation=10, lock_duration_max=1000))
    durations = []
    for i in range(3):
        actions = tr.on_event(ev("CHANNEL_CREATE", i, "a"), i * 10)
        lock = next(a for a in actions if a.kind is ActionKind.LOCK)
        durations.append(lock.until - clock.wall)
        tr.release_lock("a", "manual")
    assert durations == [60, 600, 1000]


def test_dry_run_lock_takes_no_effect() -> None:
    tr, _ = make(Limits(max_concurrent_calls=0, lock_after=Rate(1, 60), dry_run=True))
    actions = tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    assert any(a.kind is ActionKind.LOCK and a.dry_run for a in actions)
    assert not tr.is_locked("a")


def test_manual_lock_from_the_database_kills_live_calls() -> None:
    tr, clock = make(Limits())
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1, "a", node="fs2"), 0)
    actions = tr.apply_lock(Lock("a", "L1", None, "fraud", "manual"))
    assert sorted(hangups(actions)) == [U[0], U[1]]
    assert {a.node for a in actions if a.kind is ActionKind.HANGUP} == {"fs1", "fs2"}
    assert tr.apply_lock(Lock("a", "L1", None, "fraud", "manual")) == []


def test_counts_are_summed_across_nodes() -> None:
    tr, _ = make(Limits(max_concurrent_calls=2))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a", node="fs1"), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1, "a", node="fs2"), 0)
    actions = tr.on_event(ev("CHANNEL_CREATE", 2, "a", node="fs2"), 0)
    assert hangups(actions) == [U[2]] and actions[1].node == "fs2"


def test_resync_adds_calls_without_hanging_up_and_drops_phantoms() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 9, "a"), 0)  # a phantom: its hangup was missed
    rows = [ChannelRow(U[0], "a", False, True, 30.0), ChannelRow(U[1], "a", False, False, 1.0),
            ChannelRow(U[2], "a", True, True, 1.0)]
    added, dropped, actions = tr.resync("fs1", rows, 100)
    assert (added, dropped, actions) == (2, 1, [])
    assert tr.active("a") == 2
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 3, "a"), 101)) == [U[3]]


def test_resync_of_one_node_leaves_the_other_alone() -> None:
    tr, _ = make(Limits())
    tr.on_event(ev("CHANNEL_CREATE", 0, "a", node="fs1"), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1, "a", node="fs2"), 0)
    tr.resync("fs2", [], 1)
    assert tr.active("a") == 1


def test_resynced_answered_call_keeps_its_age_for_the_duration_limit() -> None:
    tr, _ = make(Limits(max_call_duration=60.0))
    tr.resync("fs1", [ChannelRow(U[0], "a", False, True, 50.0)], 100)
    assert tr.tick(109) == []
    assert hangups(tr.tick(110)) == [U[0]]


def test_fail_closed_refuses_every_call() -> None:
    tr, _ = make(Limits())
    tr.set_fail_closed(True)
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)) == [U[0]]


def test_prune_forgets_idle_accounts_only() -> None:
    tr, _ = make(Limits(max_call_rate=Rate(10, 60)))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    tr.on_event(ev("CHANNEL_HANGUP", 0, "a"), 1)
    tr.on_event(ev("CHANNEL_CREATE", 1, "b"), 0)
    assert tr.prune(100_000) == 1
    assert set(tr.accounts) == {"b"}


# ---------------------------------------------------------------- invariants (hypothesis)
ops = st.lists(st.tuples(st.sampled_from(["create", "answer", "hangup", "tick"]),
                         st.integers(0, 11), st.sampled_from(["a", "b", None]),
                         st.floats(0, 5)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, 3), st.integers(1, 4))
def test_counts_match_a_brute_force_model(steps, cap: int, rate_n: int) -> None:
    limits = Limits(max_concurrent_calls=cap, max_call_rate=Rate(rate_n, 10.0),
                    max_call_duration=7.0)
    tr = Tracker(lambda a: limits, Clock())
    now = 0.0
    live: dict[str, str] = {}       # uuid -> account of counted calls (the model)
    created: dict[str, list[float]] = {}
    ended: set[str] = set()
    answered: dict[str, float] = {}
    for op, i, account, dt in steps:
        now += dt
        uuid = U[i]
        if op == "tick":
            for a in tr.tick(now):
                if a.kind is ActionKind.HANGUP:
                    assert a.uuid in live and now - answered[a.uuid] >= 7.0
                    live.pop(a.uuid)
            continue
        if uuid in ended:
            continue
        name = {"create": "CHANNEL_CREATE", "answer": "CHANNEL_ANSWER",
                "hangup": "CHANNEL_HANGUP_COMPLETE"}[op]
        known = uuid in tr.nodes.get("fs1", {})
        had_account = known and tr.nodes["fs1"][uuid].account is not None
        actions = tr.on_event(CallEvent(name, "fs1", uuid, account), now)
        if op == "hangup":
            live.pop(uuid, None)
            ended.add(uuid)
            assert actions == []
        elif account is not None and not had_account:
            window = [t for t in created.get(account, []) if t > now - 10.0] + [now]
            created[account] = window
            n_live = sum(1 for a in live.values() if a == account)
            expect_kill = len(window) > rate_n or n_live + 1 > cap
            assert hangups(actions) == ([uuid] if expect_kill else [])
            if not expect_kill:
                live[uuid] = account
        if op == "answer" and uuid not in answered:
            answered[uuid] = now
        for acct in ("a", "b"):
            assert tr.active(acct) == sum(1 for a in live.values() if a == acct) >= 0
            assert tr.active(acct) <= cap


def test_ended_calls_leave_their_duration_timer_at_once() -> None:
    tr, _ = make(Limits(max_call_duration=3600.0))
    for i in range(50):
        tr.on_event(ev("CHANNEL_ANSWER", i, "a"), i)
    assert tr.timers_armed() == 50
    for i in range(0, 50, 2):
        tr.on_event(ev("CHANNEL_HANGUP", i, "a"), 60)
    assert tr.timers_armed() == 25
    assert sorted(hangups(tr.tick(3600 + 49))) == sorted(U[i] for i in range(1, 50, 2))
    assert tr.timers_armed() == 0


def test_a_lock_during_expiry_does_not_break_the_timer_ring() -> None:
    tr, _ = make(Limits(max_call_duration=10.0, lock_after=Rate(1, 60)))
    for i in range(5):
        tr.on_event(ev("CHANNEL_ANSWER", i, "a"), 0)  # all in one bucket
    actions = tr.tick(10)
    killed = hangups(actions)
    assert sorted(set(killed)) == sorted(U[:5]) and len(killed) == 5
    assert tr.is_locked("a") and tr.timers_armed() == 0


def test_channels_that_never_carry_an_account_are_counted_not_tracked() -> None:
    tr, _ = make(Limits(max_concurrent_calls=0))
    tr.on_event(ev("CHANNEL_CREATE", 0), 0)
    tr.on_event(ev("CHANNEL_ANSWER", 0), 1)
    assert tr.on_event(ev("CHANNEL_HANGUP", 0), 2) == []
    tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 3)
    tr.on_event(ev("CHANNEL_HANGUP", 1, "a"), 4)
    assert tr.untracked_ended == 1 and tr.active("a") == 0


def test_ringing_call_whose_account_a_resync_gives_first_meets_the_limits() -> None:
    # The core db lists a ringing call's accountcode before any subscribed event carries it
    # (issue 10): the call goes through the policy as if an event had brought the account.
    tr, _ = make(Limits(max_concurrent_calls=1))
    tr.on_event(ev("CHANNEL_CREATE", 0, None), 0)
    tr.on_event(ev("CHANNEL_CREATE", 1, None), 0)
    rows = [ChannelRow(U[0], "a", False, False, 1.0), ChannelRow(U[1], "a", False, False, 1.0)]
    _, _, actions = tr.resync("fs1", rows, 1)
    assert hangups(actions) == [U[1]]
    assert tr.active("a") == 1
    assert tr.on_event(ev("CHANNEL_ANSWER", 0, "a"), 3) == []
    assert tr.active("a") == 1


def test_every_action_carries_its_clause() -> None:
    tr, _ = make(Limits(max_concurrent_calls=1, lock_after=Rate(1, 60)))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)
    actions = tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 1)
    got = [(a.kind, a.rule, a.clause) for a in actions]
    assert got == [
        (ActionKind.VIOLATION, Rule.CONCURRENCY, "denial_of_service"),
        (ActionKind.HANGUP, Rule.CONCURRENCY, "denial_of_service"),
        (ActionKind.LOCK, Rule.LOCK_AFTER, "denial_of_service"),  # the clause of its trigger
        (ActionKind.HANGUP, Rule.LOCKED, "locked"),
    ]
    refused = tr.on_event(ev("CHANNEL_CREATE", 2, "a"), 2)
    assert [(a.kind, a.clause) for a in refused] == [(ActionKind.HANGUP, "locked")]
    assert [a.clause for a in tr.release_lock("a", "manual")] == ["locked"]


def test_the_view_summarises_an_account() -> None:
    tr, _ = make(Limits(max_call_rate=Rate(5, 60)))
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 10)
    tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 11)
    v = tr.view("a")
    assert (v.account, v.live, list(v.creations), v.lock) == ("a", 2, [10, 11], None)
    assert tr.view("nobody").live == 0
    assert tr.active_accounts() == 1


def test_restored_lock_history_makes_the_next_lock_longer() -> None:
    limits = Limits(max_concurrent_calls=0, lock_after=Rate(1, 60), lock_duration=100.0,
                    lock_escalation=2.0)
    tr, clock = make(limits)
    tr.restore_lock_history({"a": [clock.wall - 3600, clock.wall - 60]})
    lock = [a for a in tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0) if a.kind is ActionKind.LOCK]
    assert lock[0].until == clock.wall + 400.0


def test_a_lock_restored_from_the_journal_is_in_force_and_expires() -> None:
    tr, clock = make(Limits())
    tr.restore_pending_lock(Lock("a", "j1", clock.wall + 30, "from the journal", "auto"))
    assert tr.is_locked("a")
    assert hangups(tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)) == [U[0]]
    clock.wall += 30
    assert tr.lock_expired("a")
    assert [(a.kind, a.extra["lock_id"]) for a in tr.tick(1)] == [(ActionKind.UNLOCK, "j1")]
    assert not tr.is_locked("a")
    tr.restore_pending_lock(Lock("b", "j2", None, "forever", "manual"))
    tr.forget_lock("b")
    assert not tr.is_locked("b") and tr.tick(2) == []


def test_a_lock_ends_by_its_own_id_only() -> None:
    tr, clock = make(Limits())
    tr.apply_lock(Lock("a", "manual-1", clock.wall + 3600, "operator", "manual"))
    assert tr.release_lock("a", "expiry", "auto-0") == []  # an older lock's expiry
    tr.forget_lock("a", "auto-0")
    assert tr.is_locked("a")
    assert [a.extra["lock_id"] for a in tr.release_lock("a", "manual", "manual-1")] == ["manual-1"]
    assert not tr.is_locked("a")


def test_pending_locks_are_confirmed_by_id() -> None:
    tr, clock = make(Limits())
    assert tr.pending_since() is None
    tr.restore_pending_lock(Lock("a", "j1", None, "", "auto", since=clock.wall - 5))
    tr.restore_pending_lock(Lock("b", "j2", None, "", "auto", since=clock.wall - 9))
    assert tr.pending_since() == clock.wall - 9
    tr.confirm_lock("b", "other")
    assert tr.pending_since() == clock.wall - 9
    tr.confirm_lock("b", "j2")
    assert tr.pending_since() == clock.wall - 5


def test_restored_windows_merge_with_this_runs_violations_unless_a_lock_emptied_them() -> None:
    limits = Limits(max_concurrent_calls=0, lock_after=Rate(3, 600), lock_duration=60.0)
    tr, clock = make(limits)
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 10.0)  # this run: one violation of a
    # b reaches lock_after in this run: its window is emptied by the lock
    for i in range(1, 4):
        tr.on_event(ev("CHANNEL_CREATE", i, "b"), 10.0 + i)
    assert tr.is_locked("b")
    tr.release_lock("b", "manual")
    tr.restore_violations({"a": [1.0], "b": [1.0, 2.0]})  # the database answered late
    assert list(tr.view("a").violations) == [1.0, 10.0]
    assert list(tr.view("b").violations) == []
    # a: earlier run's violation + this run's + this one = 3 -> locked
    assert any(x.kind is ActionKind.LOCK for x in tr.on_event(ev("CHANNEL_CREATE", 9, "a"), 20))


def test_restored_lock_history_keeps_this_runs_locks() -> None:
    limits = Limits(max_concurrent_calls=0, lock_after=Rate(1, 60), lock_duration=100.0,
                    lock_escalation=2.0)
    tr, clock = make(limits)
    tr.on_event(ev("CHANNEL_CREATE", 0, "a"), 0)  # locked in this run
    tr.release_lock("a", "manual")
    tr.restore_lock_history({"a": [clock.wall - 3600]})
    lock = [x for x in tr.on_event(ev("CHANNEL_CREATE", 1, "a"), 1) if x.kind is ActionKind.LOCK]
    assert lock[0].until == clock.wall + 400.0  # two earlier locks: x4
