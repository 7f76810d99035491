"""``[database] audit_retention`` (issue 16): audit rows older than the retention are deleted,
a batch at a time, in the writer's database thread, never on the event loop; on SQLite and a
throwaway PostgreSQL database."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import esl_guard.store.writer as writer_mod
from esl_guard.cli import main as cli
from esl_guard.store import Journal, Store
from esl_guard.store.writer import AuditWriter
from tests.harness import wait_for

DAY = 86400.0
T0 = 1_800_000_000.0


def audit(when: float, account: str = "acme") -> dict[str, Any]:
    return {"op": "audit", "event_id": str(uuid.uuid4()), "time": when, "account": account,
            "kind": "violation", "rule": "max_call_rate", "uuid": None, "node": "fs1",
            "dry_run": False, "limit": "10/1m", "observed": "11", "detail": "",
            "origin": "auto"}


def test_prune_audit_deletes_the_oldest_rows_a_batch_at_a_time(store: Store) -> None:
    store.apply([audit(T0 - 100 * DAY), audit(T0 - 91 * DAY), audit(T0 - 90 * DAY),
                 audit(T0 - DAY), audit(T0)])
    lock = store.manual_lock("mallory", until=None, reason="fraud", now=T0 - 120 * DAY)
    before = T0 - 90 * DAY
    assert store.prune_audit(before, batch=1) == 1  # the oldest: the lock's own audit row
    assert store.audit(account="mallory") == []
    assert store.prune_audit(before, batch=5) == 2
    assert store.prune_audit(before, batch=5) == 0
    assert [r["time"] for r in store.audit(account="acme")] == [T0 - 90 * DAY, T0 - DAY, T0]
    assert [lk.lock_id for lk in store.active_locks(T0)] == [lock.lock_id]  # locks stay


class ThreadRecordingStore:
    """The real store; remembers which thread ran each prune_audit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.threads: list[int] = []

    def prune_audit(self, before: float, batch: int) -> int:
        self.threads.append(threading.get_ident())
        return self.store.prune_audit(before, batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def writer(store: Store, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AuditWriter, ThreadRecordingStore]]:
    monkeypatch.setattr(writer_mod, "PRUNE_FIRST", 0.0)
    monkeypatch.setattr(writer_mod, "PRUNE_BATCH", 2)
    recording = ThreadRecordingStore(store)
    w = AuditWriter(recording, Journal(tmp_path / "journal.jsonl"),  # type: ignore[arg-type]
                    clock=lambda: T0, retention=90 * DAY)
    yield w, recording
    w.stop(5)


def test_the_writer_prunes_old_rows_in_its_database_thread(
        store: Store, writer: tuple[AuditWriter, ThreadRecordingStore]) -> None:
    w, recording = writer
    store.apply([audit(T0 - (91 + i) * DAY) for i in range(5)] + [audit(T0 - 89 * DAY)])
    w.start()
    w.submit(audit(T0))  # writes go on meanwhile
    assert wait_for(lambda: w.pruned == 5, timeout=15)
    assert w.flush(5)
    assert sorted(r["time"] for r in store.audit()) == [T0 - 89 * DAY, T0]
    assert len(recording.threads) == 3  # batches of 2: 2, 2, 1
    assert threading.get_ident() not in recording.threads  # never on the event loop


def test_audit_retention_in_the_conf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from esl_guard.config import load_config

    conf = tmp_path / "esl-guard.conf"
    base = f"[freeswitch]\n[database]\nurl = sqlite:///{tmp_path / 'g.db'}\n"
    conf.write_text(base)
    conf.chmod(0o600)
    assert load_config(conf).database.audit_retention == 90 * DAY
    conf.write_text(base + "audit_retention = off\n")
    assert load_config(conf).database.audit_retention is None
    conf.write_text(base + "audit_retention = 30d\n")
    assert load_config(conf).database.audit_retention == 30 * DAY
    conf.write_text(base + "audit_retention = soon\n")
    assert cli(["check-config", "-c", str(conf)]) == 2
    assert "[database] audit_retention = soon: expected a duration" in capsys.readouterr().err
