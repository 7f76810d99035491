"""Reloads over real TCP (issue 11, items 12 and 13): the real daemon against the simulator,
its conf edited and reloaded as SIGHUP does (``Daemon.request_reload``)."""
from __future__ import annotations

import logging

import pytest

from esl_guard.daemon import Daemon
from esl_guard.model import Action, ActionKind, CallEvent, Limits, Lock, Rate, clause_of
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.tracker import Tracker
from tests.harness import Harness, wait_for


def reload(h: Harness, d: Daemon, caplog: pytest.LogCaptureFixture, old: str, new: str) -> None:
    """Edit the conf (``old`` -> ``new``), reload, and wait until the reload is applied."""
    h.conf.write_text(h.conf.read_text().replace(old, new))
    done = caplog.text.count("reload: ")
    d.request_reload()
    assert wait_for(lambda: caplog.text.count("reload: ") > done), "the reload was not applied"


def dry_hangups(d: Daemon, rule: str) -> float:
    clause = clause_of(rule)
    return float(d.metrics.actions.labels(rule, "hangup", "true", clause, "none")._value.get())


def test_a_call_over_the_limit_in_dry_run_counts_once_enforcing(
        h: Harness, fs: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    """Item 12: a call that violated during the dry run is really up, so after the reload to
    enforcing it holds its slot: the next call over the limit is refused."""
    caplog.set_level(logging.INFO)
    d = h.start("max_concurrent_calls = 1\ndry_run = true")
    a = fs.create_call("acme", account_on="create")
    b = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: dry_hangups(d, "max_concurrent_calls") == 1)
    fs.hangup(a)
    assert wait_for(lambda: a not in d.guard.tracker.nodes["default"])
    reload(h, d, caplog, "dry_run = true", "dry_run = false")
    c = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(c)), "b is up: c is the second call of acme"
    assert fs.kills == [(c, "CALL_REJECTED")] and b in fs.calls()
    assert d.guard.tracker.active("acme") == 1


def test_duration_timers_of_dry_run_violations_run_after_the_reload(
        h: Harness, fs: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    """Item 12: both a call whose duration ran out during the dry run and a call admitted over
    the concurrency limit during it are hung up by max_call_duration once enforcing."""
    caplog.set_level(logging.INFO)
    d = h.start("max_concurrent_calls = 1\nmax_call_duration = 1s\ndry_run = true")
    a = fs.create_call("acme", account_on="create")
    fs.answer(a)
    b = fs.create_call("acme", account_on="create")
    fs.answer(b)
    assert wait_for(lambda: dry_hangups(d, "max_concurrent_calls") == 1)
    assert wait_for(lambda: dry_hangups(d, "max_call_duration") >= 1)
    assert fs.kills == []
    reload(h, d, caplog, "dry_run = true", "dry_run = false")
    assert wait_for(lambda: h.killed(a) and h.killed(b)), fs.kills
    assert sorted(u for u, _ in fs.kills) == sorted([a, b])
    assert wait_for(lambda: d.guard.tracker.active("acme") == 0)


def test_a_new_account_variable_applies_to_the_next_event(
        h: Harness, fs: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    """Item 13: after a reload of account_variable, calls carrying the account in the new
    variable are followed (and limited) from their first event, not only after a resync."""
    caplog.set_level(logging.INFO)
    d = h.start("max_concurrent_calls = 1\naccount_variable = accountcode")
    reload(h, d, caplog, "account_variable = accountcode", "account_variable = tenant")
    a = fs.create_call("acme", account_on="create", variable="tenant")
    b = fs.create_call("acme", account_on="create", variable="tenant")
    assert wait_for(lambda: h.killed(b)), "the second call of acme (by tenant) is over the limit"
    assert fs.kills == [(b, "CALL_REJECTED")] and a in fs.calls()
    old = fs.create_call("bob", account_on="create", variable="accountcode")
    assert wait_for(lambda: old in d.guard.tracker.nodes["default"])
    assert d.guard.tracker.active("bob") == 0  # the old variable names no account any more


# ---------------------------------------------------------------- the tracker, explicit clocks
UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(4)]


def reloadable(limits: Limits) -> tuple[Tracker, dict[str, Limits]]:
    policy = {"acme": limits}
    return Tracker(lambda a: policy[a], lambda: 1_800_000_000.0), policy


def call(tr: Tracker, i: int, now: float, answer: bool = True) -> list[Action]:
    actions = tr.on_event(CallEvent("CHANNEL_CREATE", "fs1", UUIDS[i], "acme"), now)
    if answer:
        actions += tr.on_event(CallEvent("CHANNEL_ANSWER", "fs1", UUIDS[i]), now)
    return actions


def hangups(actions: list[Action]) -> list[tuple[str | None, bool]]:
    return [(a.uuid, a.dry_run) for a in actions if a.kind is ActionKind.HANGUP]


def test_a_dry_run_reports_a_duration_once_even_across_reloads() -> None:
    tr, policy = reloadable(Limits(max_call_duration=10.0, dry_run=True))
    call(tr, 0, 0.0)
    assert hangups(tr.tick(10.0)) == [(UUIDS[0], True)]
    assert tr.active("acme") == 1  # still up: it still counts
    assert tr.retime(11.0) == [] and tr.tick(12.0) == []  # a reload that stays in dry run
    policy["acme"] = Limits(max_call_duration=20.0, dry_run=True)
    assert tr.retime(13.0) == [] and hangups(tr.tick(20.0)) == [(UUIDS[0], True)]
    policy["acme"] = Limits(max_call_duration=20.0)
    assert tr.retime(21.0) == []
    assert hangups(tr.tick(21.0)) == [(UUIDS[0], False)]
    assert tr.active("acme") == 0


def test_a_call_a_dry_run_let_through_a_lock_is_hung_up_when_enforcing() -> None:
    tr, policy = reloadable(Limits(dry_run=True))
    tr.apply_lock(Lock("acme", "m1", None, "fraud", "manual"))
    assert hangups(call(tr, 0, 0.0)) == [(UUIDS[0], True)]
    assert tr.active("acme") == 1
    assert tr.retime(1.0) == []
    policy["acme"] = Limits()
    assert hangups(tr.retime(2.0)) == [(UUIDS[0], False)]
    assert tr.active("acme") == 0 and tr.retime(3.0) == []


def test_violations_of_a_dry_run_do_not_lock_once_enforcing() -> None:
    """Found by tests/test_model.py: a dry run's violation counted toward a real lock after the
    reload (a restart counts only real ones: the database's non-dry violations)."""
    tr, policy = reloadable(Limits(max_concurrent_calls=1, lock_after=Rate(2, 60.0),
                                   dry_run=True))
    call(tr, 0, 0.0)
    assert hangups(call(tr, 1, 1.0)) == [(UUIDS[1], True)]  # dry-run violation 1 of 2
    policy["acme"] = Limits(max_concurrent_calls=1, lock_after=Rate(2, 60.0))
    tr.retime(2.0)
    actions = call(tr, 2, 3.0)  # the first real violation
    assert hangups(actions) == [(UUIDS[2], False)]
    assert not any(a.kind is ActionKind.LOCK for a in actions) and not tr.is_locked("acme")
    actions = call(tr, 3, 4.0)  # the second: now it locks
    assert any(a.kind is ActionKind.LOCK and not a.dry_run for a in actions)
