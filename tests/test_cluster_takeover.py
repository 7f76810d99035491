"""A standby's takeover in one process (issue 14): the real daemon against the simulator,
its role switched by hand (no PostgreSQL: the role logic is the leadership's, tested apart).
While standby it follows and acts on nothing; at takeover it pushes the locks and hangs up,
with the state it holds, the calls over their limits that are still up, and no other."""
from __future__ import annotations

from pathlib import Path

from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store
from tests.harness import Harness, wait_for


def test_a_standby_acts_on_nothing_and_its_takeover_enforces_what_it_saw(
        h: Harness, fs: FakeFreeSWITCH, tmp_path: Path) -> None:
    daemon = h.start("max_concurrent_calls = 10\nlock_after = 2/1m\nlock_duration = 1h",
                     extra="[account:acme]\nmax_concurrent_calls = 1\n"
                           "[account:bob]\nmax_concurrent_calls = 1\n")
    guard = daemon.guard
    guard.set_active(False)
    assert guard.status_line().startswith("standby; ")
    within = fs.create_call("bob")
    kept = fs.create_call("acme")
    over = [fs.create_call("acme"), fs.create_call("acme")]  # two violations: acme is locked
    gone = fs.create_call("bob")  # over bob's limit, then ended before the takeover
    assert wait_for(lambda: guard.tracker.is_locked("acme") and gone in {
        a.uuid for acts in guard.tracker.deferred.get("default", {}).values() for a in acts})
    fs.hangup(gone)
    assert wait_for(lambda: gone not in guard.tracker.nodes.get("default", {}))
    assert fs.kills == [] and "acme" not in fs.hash.get("esl_guard", {})
    assert daemon.writer.flush(10)
    store = Store(h.db_url)
    try:
        assert store.audit() == [] and store.active_locks(1e10) == []
    finally:
        store.close()

    guard.set_active(True)
    # the calls over the limit and the locked account's call: hung up; the lock pushed
    assert wait_for(lambda: {u for u, _ in fs.kills} == {*over, kept})
    assert wait_for(lambda: "acme" in fs.hash.get("esl_guard", {}))
    assert within in fs.calls() and gone not in {u for u, _ in fs.kills}
    assert daemon.writer.flush(10)
    store = Store(h.db_url)
    try:
        rows = store.audit()
        assert sorted(r["uuid"] for r in rows if r["kind"] == "hangup") == sorted([*over, kept])
        assert [r["account"] for r in rows if r["kind"] == "lock"] == ["acme"]
        assert [lk.account for lk in store.active_locks(0)] == ["acme"]
    finally:
        store.close()
