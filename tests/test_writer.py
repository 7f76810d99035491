"""AuditWriter under gevent: outages, spills to the journal, restarts, a full disk.

No monkey-patching: the writer runs Store calls in a native thread, as in the daemon.
"""
from __future__ import annotations

import errno
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from tenacity import wait_fixed

from esl_guard.store import Journal, Store, StoreError
from esl_guard.store.writer import AuditWriter

T0 = 1_700_000_000.0


class FlakyStore:
    """The real store, whose apply() fails while `down` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False
        self.attempts = 0

    def apply(self, ops: list[dict[str, Any]]) -> None:
        self.attempts += 1
        if self.down:
            raise StoreError("database down (test)")
        self.store.apply(ops)


class FullJournal(Journal):
    """A journal on a disk that is full while `full` is set."""

    full = False

    def append(self, ops: list[dict[str, Any]]) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(ops)


def audit_op(n: int, account: str = "acc1") -> dict[str, Any]:
    # Same time for all: store.audit() then lists rows in insertion (id) order.
    return {"op": "audit", "event_id": f"{uuid.uuid4()}", "time": T0, "account": account,
            "kind": "violation", "rule": "max_call_rate", "uuid": f"call-{n}", "node": "fs1",
            "dry_run": False, "limit": "10/1m", "observed": str(n), "detail": f"op {n}",
            "origin": "auto"}


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        gevent.sleep(0.01)


@pytest.fixture
def flaky(store: Store) -> FlakyStore:
    return FlakyStore(store)


@pytest.fixture
def make_writer(flaky: FlakyStore, tmp_path: Path) -> Iterator[Callable[..., AuditWriter]]:
    writers: list[AuditWriter] = []

    def make(journal: Journal | None = None, **kw: Any) -> AuditWriter:
        kw.setdefault("retry_policy", wait_fixed(0.01))
        w = AuditWriter(flaky, journal or Journal(tmp_path / "journal.jsonl"), **kw)  # type: ignore[arg-type]
        writers.append(w)
        return w

    yield make
    for w in writers:
        w.stop(0)


def in_db(store: Store) -> list[str]:
    return [row["event_id"] for row in store.audit()]


def test_ops_submitted_during_an_outage_are_written_once_in_order(
    flaky: FlakyStore, store: Store, make_writer: Callable[..., AuditWriter]
) -> None:
    w = make_writer()
    states: list[bool] = []
    w.on_state = states.append
    w.start()
    ops = [audit_op(i) for i in range(60)]
    for op in ops[:10]:
        w.submit(op)
    wait_until(lambda: w.written == 10)

    flaky.down = True
    for op in ops[10:40]:
        w.submit(op)
    wait_until(lambda: not w.db_ok)
    for op in ops[40:]:
        w.submit(op)
    assert w.queue_depth == 50 and w.outage_since is not None

    flaky.down = False
    assert w.flush(15)
    assert in_db(store) == [op["event_id"] for op in ops]
    assert w.db_ok and w.queue_depth == 0 and states == [False, True]


def test_queue_over_queue_max_spills_to_the_journal(
    flaky: FlakyStore, store: Store, make_writer: Callable[..., AuditWriter]
) -> None:
    w = make_writer(queue_max=10, batch_max=7)
    w.start()
    flaky.down = True
    ops = [audit_op(i) for i in range(100)]
    w.submit(ops[0])
    wait_until(lambda: not w.db_ok)
    for op in ops[1:]:
        w.submit(op)
    wait_until(lambda: w.queue_depth <= 10 and w.journal_bytes > 0)

    flaky.down = False
    assert w.flush(15)
    assert in_db(store) == [op["event_id"] for op in ops]
    wait_until(lambda: w.journal_bytes == 0)


def test_a_new_writer_replays_the_journal_of_a_previous_run(
    flaky: FlakyStore, store: Store, make_writer: Callable[..., AuditWriter], tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    first = make_writer(journal)
    first.start()
    flaky.down = True
    old = [audit_op(i) for i in range(30)]
    for op in old:
        first.submit(op)
    assert first.stop(0.2)  # the daemon stops during the outage: all ops go to the journal
    assert len(journal.read()) == 30 and store.audit() == []

    second = make_writer(Journal(tmp_path / "journal.jsonl"))
    second.start()
    new = [audit_op(i) for i in range(30, 40)]
    for op in new:
        second.submit(op)
    flaky.down = False
    assert second.flush(15)
    assert in_db(store) == [op["event_id"] for op in old + new]
    assert journal.size() == 0


def test_replaying_a_journal_already_committed_writes_nothing_twice(
    store: Store, make_writer: Callable[..., AuditWriter], tmp_path: Path
) -> None:
    """A crash between the commit and the journal clear: the replay is harmless."""
    ops = [audit_op(i) for i in range(5)]
    lock = {"op": "lock", "lock_id": str(uuid.uuid4()), "account": "acc1", "since": T0,
            "until": None, "reason": "r", "origin": "auto"}
    store.apply(ops + [lock])
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append(ops + [lock])
    w = make_writer(journal)
    w.start()
    assert w.flush(15)
    assert in_db(store) == [op["event_id"] for op in ops]
    assert [lk.lock_id for lk in store.active_locks(T0 + 1)] == [lock["lock_id"]]


def test_flush_with_the_database_down_spills_everything(
    flaky: FlakyStore, store: Store, make_writer: Callable[..., AuditWriter], tmp_path: Path
) -> None:
    w = make_writer()
    w.start()
    flaky.down = True
    ops = [audit_op(i) for i in range(25)]
    for op in ops:
        w.submit(op)
    assert w.flush(0.3) is True
    assert w.queue_depth == 0
    assert Journal(tmp_path / "journal.jsonl").read() == ops
    flaky.down = False
    assert w.flush(15)
    assert in_db(store) == [op["event_id"] for op in ops]


def test_flush_before_start_spills_to_the_journal(
    make_writer: Callable[..., AuditWriter], tmp_path: Path
) -> None:
    w = make_writer()
    w.submit(audit_op(0))
    assert w.flush(0) is True
    assert len(Journal(tmp_path / "journal.jsonl").read()) == 1


def test_disk_full_keeps_ops_in_memory_until_they_can_be_written(
    flaky: FlakyStore, store: Store, make_writer: Callable[..., AuditWriter], tmp_path: Path
) -> None:
    journal = FullJournal(tmp_path / "journal.jsonl")
    journal.full = True
    w = make_writer(journal, queue_max=5)
    w.start()
    flaky.down = True
    ops = [audit_op(i) for i in range(20)]
    for op in ops:
        w.submit(op)
    wait_until(lambda: not w.db_ok and flaky.attempts >= 3)
    assert w.queue_depth == 20 and journal.size() == 0
    assert w.flush(0.1) is False  # nothing could be saved anywhere: still only in memory

    flaky.down = False
    assert w.flush(15)
    assert in_db(store) == [op["event_id"] for op in ops]


def test_an_op_the_database_rejects_is_dropped_and_the_rest_written(
    store: Store, make_writer: Callable[..., AuditWriter]
) -> None:
    w = make_writer()
    w.start()
    ops = [audit_op(0), {"op": "audit", "event_id": "no-time"}, audit_op(2)]
    for op in ops:
        w.submit(op)
    assert w.flush(15)
    assert in_db(store) == [ops[0]["event_id"], ops[2]["event_id"]]
    assert w.rejected == 1 and w.db_ok


# -- issue 16 bug 3: every failing database write is logged (rate-limited) and counted --------

def test_every_failed_write_is_counted_and_logged_rate_limited(
        flaky: FlakyStore, store: Store, make_writer: Callable[..., AuditWriter],
        caplog: pytest.LogCaptureFixture) -> None:
    w = make_writer()
    w.start()
    status = [{"op": "status", "time": T0, "body": {"time": T0}}]
    flaky.down = True
    with caplog.at_level("DEBUG", logger="esl_guard.store.writer"):
        assert not w.write_now(status, "the daemon status")
        assert not w.write_now(status, "the daemon status")
        w.submit(audit_op(1))
        wait_until(lambda: w.write_failures >= 6)
    errors = [r.getMessage() for r in caplog.records
              if r.name == "esl_guard.store.writer" and r.levelname == "ERROR"]
    assert errors[0].startswith("cannot write the daemon status to the database: database "
                                "down (test) (1 failed database writes")
    # the audit outage starts a line of its own; the repeats within a minute do not
    assert [m for m in errors if "audit database write failed" in m]
    assert len(errors) == 2, errors
    assert w.write_failures >= 6 and not w.db_ok

    flaky.down = False
    caplog.clear()
    with caplog.at_level("INFO", logger="esl_guard.store.writer"):
        assert w.write_now(status, "the daemon status")
    assert "the daemon status is written to the database again" in caplog.text
    assert store.get_status() is not None
    assert w.flush(15)


def test_failed_writes_after_the_log_interval_are_logged_again_with_their_count(
        flaky: FlakyStore, make_writer: Callable[..., AuditWriter],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import esl_guard.store.writer as writer_mod

    w = make_writer()
    status = [{"op": "status", "time": T0, "body": {"time": T0}}]
    flaky.down = True
    monkeypatch.setattr(writer_mod, "WRITE_ERROR_LOG_INTERVAL", 0.0)
    with caplog.at_level("ERROR", logger="esl_guard.store.writer"):
        for _ in range(3):
            w.write_now(status, "the daemon status")
    assert [r.getMessage().split("(")[-1] for r in caplog.records
            if r.name == "esl_guard.store.writer"] == [
        "1 failed database writes since the last such line, 1 since start)",
        "1 failed database writes since the last such line, 2 since start)",
        "1 failed database writes since the last such line, 3 since start)"]
