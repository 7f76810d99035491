"""Store: schema, idempotent ops, locks, audit queries, notifications (SQLite + PostgreSQL)."""
from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from esl_guard.store import LockInfo, Store, StoreDataError, StoreError
from esl_guard.store.engine import make_engine, parse_url
from esl_guard.store.migrate import head_revision
from esl_guard.store.models import Base

T0 = 1_700_000_000.0


def create_engine(url: str) -> Engine:
    return make_engine(parse_url(url))  # plain postgresql:// means psycopg2 here


def audit_op(account: str = "acc1", time: float = T0, **kw: Any) -> dict[str, Any]:
    op = {
        "op": "audit", "event_id": str(uuid.uuid4()), "time": time, "account": account,
        "kind": "violation", "rule": "max_concurrent_calls", "uuid": "call-1",
        "node": "fs1", "dry_run": False, "limit": 2, "observed": 3,
        "detail": "3 calls > 2", "origin": "auto",
    }
    op.update(kw)
    return op


def lock_op(account: str = "acc1", since: float = T0, until: float | None = T0 + 3600,
            **kw: Any) -> dict[str, Any]:
    op = {"op": "lock", "lock_id": str(uuid.uuid4()), "account": account, "since": since,
          "until": until, "reason": "lock_after", "origin": "auto"}
    op.update(kw)
    return op


def test_upgrade_is_idempotent_and_sets_revision(db_url: str) -> None:
    s = Store(db_url)
    try:
        assert s.revision() is None
        s.upgrade()
        assert s.revision() == head_revision() == "0005"
        s.upgrade()
        assert s.revision() == "0005"
        s.ping()
    finally:
        s.close()


def test_migrations_match_models(store: Store, db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_apply_same_batch_twice_writes_each_op_once(store: Store) -> None:
    batch = [
        audit_op(),
        lock_op(),
        audit_op(kind="lock", rule="lock_after", time=T0 + 1),
        {"op": "status", "time": T0, "body": {"calls": 3}},
    ]
    store.apply(batch)
    store.apply(batch)
    rows = store.audit()
    assert [r["event_id"] for r in rows] == [batch[0]["event_id"], batch[2]["event_id"]]
    assert rows[0] == {
        "time": T0, "account": "acc1", "kind": "violation", "rule": "max_concurrent_calls",
        "uuid": "call-1", "node": "fs1", "dry_run": False, "detail": "3 calls > 2",
        "limit": "2", "observed": "3", "origin": "auto", "event_id": batch[0]["event_id"],
        "clause": "denial_of_service",  # filled from the rule when the op has none
        "destination": None, "destination_class": None,
    }
    assert [lk.lock_id for lk in store.active_locks(T0 + 10)] == [batch[1]["lock_id"]]
    assert store.lock_counts_since(0) == {"acc1": 1}


def test_new_lock_supersedes_the_active_one(store: Store) -> None:
    first, second = lock_op(since=T0), lock_op(since=T0 + 60, until=None)
    store.apply([first])
    store.apply([second])
    active = store.active_locks(T0 + 120)
    assert active == [LockInfo(second["lock_id"], "acc1", T0 + 60, None, "lock_after", "auto")]
    # Replaying the older op does not supersede the newer lock.
    store.apply([first, second])
    assert [lk.lock_id for lk in store.active_locks(T0 + 120)] == [second["lock_id"]]
    assert store.lock_counts_since(T0) == {"acc1": 2}


def test_unlock_releases_the_active_lock_and_replay_is_harmless(store: Store) -> None:
    lock1 = lock_op(since=T0)
    unlock = {"op": "unlock", "account": "acc1", "at": T0 + 10, "by": "manual"}
    lock2 = lock_op(since=T0 + 20)
    store.apply([lock1, unlock, lock2])
    assert [lk.lock_id for lk in store.active_locks(T0 + 30)] == [lock2["lock_id"]]
    # A crash replay of the whole batch must not release the newer lock.
    store.apply([lock1, unlock, lock2])
    assert [lk.lock_id for lk in store.active_locks(T0 + 30)] == [lock2["lock_id"]]
    # No active lock: a no-op.
    store.apply([{"op": "unlock", "account": "nobody", "at": T0, "by": "manual"}])


def test_active_locks_respects_until(store: Store) -> None:
    store.apply([lock_op("a", since=T0, until=T0 + 100), lock_op("b", since=T0, until=None)])
    assert [lk.account for lk in store.active_locks(T0 + 50)] == ["a", "b"]
    assert [lk.account for lk in store.active_locks(T0 + 100)] == ["b"]
    assert [lk.account for lk in store.active_locks(T0 + 10**9)] == ["b"]


def test_manual_lock_and_unlock_write_audit_rows(store: Store) -> None:
    auto = lock_op(since=T0)
    store.apply([auto])
    info = store.manual_lock("acc1", until=None, reason="fraud", now=T0 + 5)
    assert (info.account, info.since, info.until, info.reason, info.origin) == (
        "acc1", T0 + 5, None, "fraud", "manual")
    assert store.active_locks(T0 + 6) == [info]  # the auto lock was superseded

    released = store.manual_unlock("acc1", now=T0 + 7)
    assert released == info
    assert store.active_locks(T0 + 8) == []
    assert store.manual_unlock("acc1", now=T0 + 9) is None

    rows = store.audit(account="acc1")
    assert [(r["kind"], r["origin"], r["rule"], r["time"]) for r in rows] == [
        ("lock", "manual", "manual", T0 + 5), ("unlock", "manual", "manual", T0 + 7)]
    assert "fraud" in rows[0]["detail"]
    with pytest.raises(ValueError):
        store.manual_lock("acc1", until=T0, reason="", now=T0 + 10)


def test_violations_since_skips_dry_run_and_other_kinds(store: Store) -> None:
    store.apply([
        audit_op("b", time=T0 + 2),
        audit_op("a", time=T0 + 1),
        audit_op("a", time=T0 - 100),
        audit_op("c", time=T0 + 3, dry_run=True),
        audit_op("a", time=T0 + 4, kind="hangup"),
    ])
    assert store.violations_since(T0) == [("a", T0 + 1), ("b", T0 + 2)]


def test_lock_counts_since(store: Store) -> None:
    store.apply([
        lock_op("a", since=T0 - 40 * 86400),
        lock_op("a", since=T0 - 86400, until=T0 - 80000),
        lock_op("a", since=T0),
        lock_op("b", since=T0 - 10),
    ])
    store.apply([{"op": "unlock", "account": "b", "at": T0, "by": "manual"}])
    assert store.lock_counts_since(T0 - 30 * 86400) == {"a": 2, "b": 1}


def test_audit_filters_and_limit(store: Store) -> None:
    store.apply([audit_op("a", time=T0 + i) for i in range(5)] + [audit_op("b", time=T0 + 9)])
    assert [r["time"] for r in store.audit(account="a", since=T0 + 2)] == [
        T0 + 2, T0 + 3, T0 + 4]
    assert [r["time"] for r in store.audit(limit=2)] == [T0 + 4, T0 + 9]


def test_status_round_trip_keeps_the_newest(store: Store) -> None:
    assert store.get_status() is None
    store.apply([{"op": "status", "time": T0 + 10, "body": {"calls": 5, "node": "fs1"}}])
    store.apply([{"op": "status", "time": T0, "body": {"calls": 1}}])  # an older replay
    assert store.get_status() == (T0 + 10, {"calls": 5, "node": "fs1"})


def test_malformed_op_raises_store_data_error(store: Store) -> None:
    with pytest.raises(StoreDataError, match="missing field"):
        store.apply([{"op": "audit", "time": T0}])
    with pytest.raises(StoreDataError, match="unknown op"):
        store.apply([{"op": "nope"}])


def test_long_values_are_clipped_not_rejected(store: Store) -> None:
    store.apply([audit_op("x" * 300, uuid="u" * 100, observed="9" * 100)])
    [row] = store.audit()
    assert (len(row["account"]), len(row["uuid"]), len(row["observed"])) == (255, 64, 64)


def test_wait_for_change_wakes_on_notify(pg_url: str) -> None:
    listener, other = Store(pg_url), Store(pg_url)
    try:
        listener.upgrade()
        assert listener.wait_for_change(0) is True  # (re)connected: changes may be missed
        assert listener.wait_for_change(0.05) is False
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(listener.wait_for_change(20)))
        waiter.start()
        other.manual_lock("acc1", until=None, reason="", now=T0)
        waiter.join(30)
        assert result == [True]
        other.notify()
        assert listener.wait_for_change(20) is True
        assert listener.wait_for_change(0) is False
    finally:
        listener.close()
        other.close()


def test_wait_for_change_on_sqlite_returns_false(tmp_path: Any) -> None:
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert s.wait_for_change(0.01) is False
        s.notify()
    finally:
        s.close()


def test_unreachable_database_raises_clean_store_error() -> None:
    s = Store("postgresql://postgres:s3cret-pw@127.0.0.1:1/x")
    try:
        for call in (s.ping, s.upgrade, lambda: s.apply([audit_op()]),
                     lambda: s.wait_for_change(1)):
            with pytest.raises(StoreError) as info:
                call()
            message = str(info.value)
            assert "s3cret-pw" not in message
            assert "127.0.0.1" in message and "\n" not in message
    finally:
        s.close()


def test_bad_urls_raise_store_error(tmp_path: Any) -> None:
    with pytest.raises(StoreError, match="invalid database URL"):
        Store("not a url")
    with pytest.raises(StoreError, match="unsupported") as info:
        Store("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create directory"):
        Store(f"sqlite:///{blocker / 'sub' / 'x.db'}")


def test_sqlite_creates_parent_directory_and_uses_wal(tmp_path: Any) -> None:
    path = tmp_path / "a" / "b" / "guard.db"
    s = Store(f"sqlite:///{path}")
    try:
        s.upgrade()
        assert path.exists()
        engine = create_engine(f"sqlite:///{path}")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        engine.dispose()
    finally:
        s.close()


def test_audit_filters_by_clause(store: Store) -> None:
    store.apply([audit_op(), audit_op(kind="violation", rule="max_short_calls", time=T0 + 1,
                                      clause="mass_calling"),
                 audit_op(kind="warn", rule="caller_id_allowed", time=T0 + 2)])
    assert [r["rule"] for r in store.audit(clauses=["mass_calling"])] == ["max_short_calls"]
    assert [r["clause"] for r in store.audit(clauses=["impersonation", "denial_of_service"])] == [
        "denial_of_service", "impersonation"]
    assert store.audit(clauses=["hosting"]) == []


# ---- issue 11: locks end by id, late locks, unlock requests, restart state ----------------

def test_an_unlock_op_with_a_lock_id_ends_that_lock_only(store: Store) -> None:
    auto = lock_op(since=T0, until=T0 + 60)
    store.apply([auto])
    manual = store.manual_lock("acc1", until=T0 + 3600, reason="operator", now=T0 + 10)
    store.apply([{"op": "unlock", "account": "acc1", "at": T0 + 60, "by": "expiry",
                  "lock_id": auto["lock_id"]}])
    assert store.active_locks(T0 + 61) == [manual]


def test_a_lock_written_late_that_a_newer_lock_replaced_is_stored_ended(store: Store) -> None:
    manual = store.manual_lock("acc1", until=None, reason="operator", now=T0 + 10)
    late = lock_op(since=T0, until=T0 + 3600)  # decided before the manual lock, written after
    store.apply([late])
    assert store.active_locks(T0 + 20) == [manual]  # one active lock per account


def test_an_unlock_request_ends_a_lock_written_after_it(store: Store) -> None:
    assert store.manual_unlock("acc1", now=T0 + 5) is None  # nothing stored yet
    assert store.unlocks_since(T0) == [("acc1", T0 + 5)]
    assert store.unlocks_since(T0 + 6) == []
    store.apply([lock_op(since=T0, until=None)])  # the daemon's lock, decided at T0
    assert store.active_locks(T0 + 10) == []
    later = lock_op(since=T0 + 6, until=None)  # a lock decided after the unlock stays
    store.apply([later])
    assert [lk.lock_id for lk in store.active_locks(T0 + 10)] == [later["lock_id"]]
    assert [r["kind"] for r in store.audit(account="acc1")] == []  # nothing was released


def test_lock_times_since_lists_the_auto_locks_before_a_time(store: Store) -> None:
    store.apply([lock_op("a", since=T0 - 40 * 86400), lock_op("a", since=T0 - 100),
                 lock_op("a", since=T0 + 5), lock_op("b", since=T0 - 50),
                 lock_op("c", since=T0 - 20, origin="manual")])
    assert store.lock_times_since(T0 - 30 * 86400) == {"a": [T0 - 100, T0 + 5], "b": [T0 - 50]}
    assert store.lock_times_since(T0 - 30 * 86400, before=T0) == {"a": [T0 - 100],
                                                                  "b": [T0 - 50]}


def test_lock_window_events_in_the_order_they_happened(store: Store) -> None:
    store.apply([
        audit_op("a", time=T0 + 1), audit_op("a", time=T0 + 2),
        audit_op("a", time=T0 + 2, kind="lock", rule="lock_after"),
        audit_op("a", time=T0 + 3, kind="lock", rule="manual"),  # not a lock_after decision
        audit_op("b", time=T0 + 4, dry_run=True),                 # dry run: never counted
        audit_op("a", time=T0 + 5, kind="hangup"),
        audit_op("a", time=T0 + 6), audit_op("a", time=T0 - 10),
    ])
    assert store.lock_window_events(T0) == [
        ("a", T0 + 1, "violation"), ("a", T0 + 2, "violation"), ("a", T0 + 2, "lock"),
        ("a", T0 + 6, "violation")]
    assert store.lock_window_events(T0, before=T0 + 2) == [("a", T0 + 1, "violation")]


def test_the_unlocks_migration_downgrades_and_upgrades(db_url: str) -> None:
    from alembic import command

    from esl_guard.store.migrate import alembic_config

    s = Store(db_url)
    engine = create_engine(db_url)
    try:
        s.upgrade()
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert s.revision() == "0002"
        s.upgrade()
        assert s.revision() == "0005" and s.unlocks_since(0) == []
    finally:
        engine.dispose()
        s.close()


def test_audit_rows_carry_the_destination_and_its_class(store: Store) -> None:
    """Issue 12: every decision records the dialled number and its class (audit --json)."""
    store.apply([audit_op(destination="+190012345", destination_class="premium"),
                 audit_op(rule="locked")])
    rows = store.audit()
    assert [(r["destination"], r["destination_class"]) for r in rows] == [
        ("+190012345", "premium"), (None, None)]


def test_call_minutes_round_trip_once_each(store: Store) -> None:
    """The minutes of ended calls under a budget are stored once (a replayed op changes
    nothing) and read back by their end time."""
    ops = [{"op": "minutes", "event_id": str(uuid.uuid4()), "account": "acme",
            "destination_class": cls, "answered": T0 + i, "ended": T0 + i + 60}
           for i, cls in enumerate(["premium", None, "premium"])]
    store.apply(ops)
    store.apply(ops[:1])  # a replay from the journal
    assert store.minutes_since(T0 + 60) == [
        ("acme", None, T0 + 1, T0 + 61), ("acme", "premium", T0 + 2, T0 + 62)]
    assert store.minutes_since(T0, before=T0 + 61) == [("acme", "premium", T0, T0 + 60)]
    with pytest.raises(StoreDataError):
        store.apply([{"op": "minutes", "account": "acme", "answered": T0}])


def test_the_destinations_migration_downgrades_and_upgrades(db_url: str) -> None:
    from alembic import command

    from esl_guard.store.migrate import alembic_config

    s = Store(db_url)
    engine = create_engine(db_url)
    try:
        s.upgrade()
        s.apply([audit_op(destination="112", destination_class="emergency")])
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        assert s.revision() == "0003"
        s.upgrade()
        assert s.revision() == head_revision() and s.minutes_since(0) == []
        assert [r["destination"] for r in s.audit()] == [None]  # the column came back empty
    finally:
        engine.dispose()
        s.close()
