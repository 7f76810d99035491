"""The pure part of high availability (issue 14): role transitions from observations and
explicit clocks, and the deterministic decision ids."""
from __future__ import annotations

import pytest

from esl_guard.cluster import Role, Seen, decision_id, lock_id_for, may_take, observe
from esl_guard.cluster.roles import Leadership, check_every, grace, starting
from esl_guard.model import Action, ActionKind, Rule

FAILOVER = 10.0
DOWN = Seen(reachable=False)
MINE = Seen(reachable=True, holds=True)
THEIRS = Seen(reachable=True, holds=False)


def run(state: Leadership, steps: list[tuple[float, Seen]]) -> tuple[Leadership, list[str]]:
    changes = []
    for now, seen in steps:
        state, change = observe(state, seen, now)
        if change is not None:
            changes.append(f"{change.old.value}->{change.new.value}")
    return state, changes


def test_a_check_is_a_fraction_of_failover_after() -> None:
    assert check_every(10.0) == 2.0
    assert check_every(1.0) == 0.2
    assert grace(10.0) == 4.0 < 10.0


def test_holding_the_lock_is_active_and_the_standby_waits() -> None:
    state, changes = run(starting(0.0), [(0.0, MINE), (2.0, MINE)])
    assert state.role is Role.ACTIVE and changes == []
    other, changes = run(starting(0.0), [(0.0, THEIRS), (2.0, THEIRS)])
    assert other.role is Role.STANDBY and changes == ["active->standby"]
    assert other.since == 0.0


def test_the_standby_takes_over_once_the_lock_is_free() -> None:
    state, _ = run(starting(0.0), [(0.0, THEIRS), (2.0, THEIRS)])
    assert may_take(state, 4.0, FAILOVER)  # reachable without a break for grace
    state, changes = run(state, [(4.0, MINE)])
    assert state.role is Role.ACTIVE and state.since == 4.0 and changes == ["standby->active"]


@pytest.mark.parametrize("outage", [1, 5, 100])
def test_a_standby_never_promotes_while_the_database_is_unreachable(outage: int) -> None:
    state, _ = run(starting(0.0), [(0.0, THEIRS)])
    steps = [(1.0 + t, DOWN) for t in range(outage)]
    state, changes = run(state, steps)
    assert state.role is Role.STANDBY and changes == []
    assert state.reachable_since is None


@pytest.mark.parametrize("outage", [1, 5, 100])
def test_the_active_stays_active_while_the_database_is_unreachable(outage: int) -> None:
    state, _ = run(starting(0.0), [(0.0, MINE)])
    state, changes = run(state, [(1.0 + t, DOWN) for t in range(outage)])
    assert state.role is Role.ACTIVE and changes == []
    assert may_take(state, 200.0, FAILOVER)  # retries the lock the moment the DB answers


def test_after_an_outage_the_standby_lets_the_old_active_retake_the_lock_first() -> None:
    standby, _ = run(starting(0.0), [(0.0, THEIRS), (1.0, DOWN)])
    standby, _ = run(standby, [(50.0, THEIRS)])  # back: reachable since 50
    assert not may_take(standby, 50.0, FAILOVER)
    assert not may_take(standby, 50.0 + grace(FAILOVER) - 0.1, FAILOVER)
    assert may_take(standby, 50.0 + grace(FAILOVER), FAILOVER)
    # the old active came back first and holds it: the standby stays standby
    standby, changes = run(standby, [(54.0, THEIRS)])
    assert standby.role is Role.STANDBY and changes == []


def test_an_active_that_finds_the_lock_taken_steps_down() -> None:
    state, _ = run(starting(0.0), [(0.0, MINE), (2.0, DOWN), (30.0, THEIRS)])
    assert state.role is Role.STANDBY
    _, changes = run(starting(0.0), [(0.0, MINE), (2.0, DOWN), (30.0, THEIRS)])
    assert changes == ["active->standby"]


def test_an_instance_that_never_reached_the_database_is_active() -> None:
    """As a lone esl-guard always was: enforcement never stops because the database is down."""
    state, changes = run(starting(0.0), [(0.0, DOWN), (2.0, DOWN)])
    assert state.role is Role.ACTIVE and not state.ever_reached and changes == []
    state, changes = run(state, [(4.0, THEIRS)])
    assert state.role is Role.STANDBY and changes == ["active->standby"]


def hangup(node: str = "fs1", uuid: str = "u1", rule: Rule = Rule.CONCURRENCY) -> Action:
    return Action(ActionKind.HANGUP, "acme", rule, node, uuid, cause="CALL_REJECTED")


def test_decision_ids_name_the_decision() -> None:
    assert decision_id(hangup()) == decision_id(hangup())
    ids = {decision_id(a) for a in (hangup(), hangup(node="fs2"), hangup(uuid="u2"),
                                    hangup(rule=Rule.DURATION))}
    assert len(ids) == 4
    violation = Action(ActionKind.VIOLATION, "acme", Rule.CONCURRENCY, "fs1", "u1")
    assert decision_id(violation) != decision_id(hangup())
    lock = Action(ActionKind.LOCK, "acme", Rule.LOCK_AFTER, extra={"lock_id": "L1",
                                                                  "origin": "auto"})
    unlock = Action(ActionKind.UNLOCK, "acme", extra={"lock_id": "L1", "origin": "expiry"})
    assert decision_id(lock) != decision_id(unlock)
    assert decision_id(Action(ActionKind.VIOLATION, "acme", Rule.CONCURRENCY)) is None
    assert len(str(decision_id(hangup()))) == 36


def test_lock_ids_name_the_violation_that_took_the_lock() -> None:
    assert lock_id_for("acme", "fs1/u1/max_concurrent_calls") == lock_id_for(
        "acme", "fs1/u1/max_concurrent_calls")
    assert lock_id_for("acme", "fs1/u1/max_concurrent_calls") != lock_id_for(
        "acme", "fs1/u2/max_concurrent_calls")
    assert lock_id_for("acme", "x") != lock_id_for("acme2", "x")
