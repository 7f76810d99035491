"""Account locks and the audit trail end to end: daemon + CLI + simulator, SQLite and PostgreSQL."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness, cli, wait_for
from tests.tcp_proxy import CuttableProxy

POLICY = "max_concurrent_calls = 10\nlock_after = 2/1m\nlock_duration = 1h\n"
ACME = "[account:acme]\nmax_concurrent_calls = 1\n"


@pytest.fixture
def h(tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url, fs)
    yield harness
    harness.stop()


def audit(h: Harness, *extra: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert cli(["audit", "-c", str(h.conf), "--json", *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def locked_in_fs(fs: FakeFreeSWITCH, account: str) -> bool:
    return account in fs.hash.get("esl_guard", {})


def test_lock_after_violations_survives_restart_and_unlocks(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    h.start(POLICY, extra=ACME)
    first = fs.create_call("acme", account_on="create")
    v1 = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(v1))
    assert first in fs.calls()
    v2 = fs.create_call("acme", account_on="create")
    # the second violation locks acme: its live call is killed and the lock is in the hash
    assert wait_for(lambda: h.killed(v2) and h.killed(first) and locked_in_fs(fs, "acme"))
    refused = fs.create_call("acme", account_on="answer")
    fs.answer(refused)
    assert wait_for(lambda: h.killed(refused))
    bob = fs.create_call("bob", account_on="create")
    assert h.daemon is not None and h.daemon.writer.flush(10)
    assert h.stop() == 0

    fs.hash.clear()  # and FreeSWITCH restarted meanwhile: its hash is empty
    h.start()
    assert wait_for(lambda: locked_in_fs(fs, "acme")), "locks are pushed again on connect"
    again = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(again))

    assert cli(["unlock", "acme", "-c", str(h.conf)]) == 0
    assert wait_for(lambda: not locked_in_fs(fs, "acme"), timeout=5)
    assert any(c == "api hash delete/esl_guard/acme" for c in fs.commands)
    free = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.daemon.guard.tracker.active("acme") == 1)
    assert not h.killed(free) and bob in fs.calls()

    assert h.daemon.writer.flush(10)
    rows = audit(h, "--account", "acme", capsys=capsys)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("violation") == 2 and kinds.count("lock") == 1 and kinds.count("unlock") == 1
    hung = {r["uuid"] for r in rows if r["kind"] == "hangup"}
    assert hung == {v1, v2, first, refused, again}
    for r in rows:
        assert {"time", "account", "kind", "rule", "uuid", "node", "dry_run", "detail"} <= set(r)
        assert r["account"] == "acme" and r["dry_run"] is False
    assert cli(["unlock", "acme", "-c", str(h.conf)]) == 1  # no longer locked: clear error


def test_manual_lock_reaches_freeswitch_and_again_after_its_restart(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    d = h.start(POLICY)
    live = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    assert cli(["lock", "acme", "-c", str(h.conf), "--for", "10m", "--reason", "fraud"]) == 0
    assert wait_for(lambda: locked_in_fs(fs, "acme") and h.killed(live), timeout=5)
    capsys.readouterr()
    assert cli(["locks", "-c", str(h.conf), "--json"]) == 0
    (lock,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lock["account"] == "acme" and lock["origin"] == "manual" and lock["reason"] == "fraud"
    link = d.guard.links["default"]
    fs.restart()
    assert not locked_in_fs(fs, "acme")
    assert wait_for(lambda: link.reconnects >= 1 and link.connected and locked_in_fs(fs, "acme"),
                    timeout=15)


def test_lock_expires_and_is_removed_from_freeswitch(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    h.start(POLICY)
    assert cli(["lock", "acme", "-c", str(h.conf), "--for", "1s"]) == 0
    assert wait_for(lambda: locked_in_fs(fs, "acme"), timeout=5)
    assert wait_for(lambda: not locked_in_fs(fs, "acme"), timeout=5)
    h.daemon.writer.flush(5)
    rows = audit(h, capsys=capsys)
    assert [r["kind"] for r in rows] == ["lock", "unlock"]
    assert cli(["locks", "-c", str(h.conf), "--json"]) == 0


def test_database_outage_loses_no_hangup(tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    real = make_url(pg_url)
    proxy = CuttableProxy((real.host or "127.0.0.1", real.port or 5432)).start()
    via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    h = Harness(tmp_path, via_proxy, fs)
    try:
        d = h.start("max_concurrent_calls = 1\n", extra="")
        keep = fs.create_call("acme", account_on="create")
        assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
        proxy.cut()
        victims = []
        for _ in range(5):
            u = fs.create_call("acme", account_on="create")
            victims.append(u)
            assert wait_for(lambda u=u: h.killed(u)), "enforcement goes on from memory"
        assert keep in fs.calls()
        assert wait_for(lambda: not d.writer.db_ok, timeout=10)
        proxy.restore()
        assert wait_for(lambda: d.writer.db_ok and d.writer.queue_depth == 0, timeout=60)
        rows = audit(h, capsys=capsys)
        assert {r["uuid"] for r in rows if r["kind"] == "hangup"} == set(victims)
        assert len([r for r in rows if r["kind"] == "hangup"]) == 5  # exactly once
    finally:
        h.stop()
        proxy.stop()


def test_fail_mode_closed_refuses_calls_until_lock_state_is_known(
        tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH) -> None:
    real = make_url(pg_url)
    proxy = CuttableProxy((real.host or "127.0.0.1", real.port or 5432)).start()
    via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    h = Harness(tmp_path, via_proxy, fs)
    try:
        h.write("max_concurrent_calls = 5\n")
        h.conf.write_text(h.conf.read_text().replace("[database]\n", "[database]\nfail_mode = closed\n"))
        assert cli(["db", "upgrade", "-c", str(h.conf)]) == 0
        proxy.cut()
        d = h.start()
        u = fs.create_call("acme", account_on="create")
        assert wait_for(lambda: h.killed(u))
        proxy.restore()
        assert wait_for(lambda: d.locks_loaded, timeout=30)
        ok = fs.create_call("acme", account_on="create")
        assert wait_for(lambda: ok in d.guard.tracker.nodes["default"])
        assert not h.killed(ok)
    finally:
        h.stop()
        proxy.stop()
