"""No double action in the database (issue 14): a decision stored by two instances is one
audit row, a lock taken by two instances is one lock (SQLite and PostgreSQL); with SQLite, a
second `esl-guard run` on the same database refuses to start and names the first."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import gevent.subprocess

from esl_guard.cluster import decision_id, lock_id_for
from esl_guard.model import Action, ActionKind, AuditRecord, Rule
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store
from tests.harness import node_section, wait_for

ROOT = Path(__file__).parent.parent


def two_instances(db_url: str) -> tuple[Store, Store]:
    one, two = Store(db_url), Store(db_url)
    one.upgrade()
    return one, two


def test_a_decision_stored_by_two_instances_is_one_row(db_url: str) -> None:
    one, two = two_instances(db_url)
    try:
        hangup = Action(ActionKind.HANGUP, "acme", Rule.CONCURRENCY, "fs1",
                        "6f0c7a64-52a5-4c1e-9a63-5d1f3e1b2c01", cause="CALL_REJECTED")
        event_id = decision_id(hangup)
        assert event_id is not None
        # each instance stamps its own time: the row is the same decision all the same
        one.apply([AuditRecord.from_action(hangup, event_id, 1000.0).to_op()])
        two.apply([AuditRecord.from_action(hangup, event_id, 1000.2).to_op()])
        rows = one.audit(kinds=("hangup",))
        assert [(r["uuid"], r["time"]) for r in rows] == [(hangup.uuid, 1000.0)]
    finally:
        one.close()
        two.close()


def test_a_lock_taken_by_two_instances_is_one_lock(db_url: str) -> None:
    one, two = two_instances(db_url)
    try:
        lock_id = lock_id_for("acme", "fs1/u1/max_concurrent_calls")
        now = time.time()
        for store, since in ((one, now), (two, now + 0.3)):  # the second decided it later
            store.apply([{"op": "lock", "lock_id": lock_id, "account": "acme", "since": since,
                          "until": since + 3600, "reason": "3 violations", "origin": "auto"}])
        locks = one.active_locks(now + 1)
        assert [(lk.account, lk.lock_id) for lk in locks] == [("acme", lock_id)]
    finally:
        one.close()
        two.close()


def test_a_second_run_on_the_same_sqlite_database_refuses_to_start(
        tmp_path: Path, fs: FakeFreeSWITCH) -> None:
    conf = tmp_path / "esl-guard.conf"
    conf.write_text(node_section(fs) + f"\n[database]\nurl = sqlite:///{tmp_path / 'g.db'}\n")
    conf.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    argv = [sys.executable, "-m", "esl_guard", "run", "-c", str(conf)]
    first = gevent.subprocess.Popen(argv, env=env, stderr=gevent.subprocess.DEVNULL)
    try:
        assert wait_for(lambda: fs.connections == 1, timeout=30)
        second = gevent.subprocess.run(argv, env=env, stderr=gevent.subprocess.PIPE, timeout=60)
        stderr = second.stderr.decode()
        assert second.returncode == 1
        assert "Traceback" not in stderr
        assert "refusing to start: another esl-guard run already uses the database" in stderr
        assert f"pid {first.pid} on host {socket.gethostname()}" in stderr
        assert fs.connections == 1
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
