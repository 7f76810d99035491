"""Destination classes, minute budgets and exempt calls end to end (issue 12): the real daemon
against the simulator over TCP, with its database (SQLite, and PostgreSQL for the restart)."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import gevent.subprocess
import pytest

from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store
from tests.harness import Harness, cli, node_section, wait_for

ROOT = Path(__file__).resolve().parents[1]

CLASSES = ("[destination:premium]\nprefixes = 1900 44871\nmax_concurrent_calls = 1\n\n"
           "[destination:emergency]\nprefixes = 112 911\nexempt = true\n")


def audit(conf: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    capsys.readouterr()
    assert cli(["audit", "--json", "-c", str(conf), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_a_premium_call_over_its_class_limit_is_hung_up_a_plain_call_is_not(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    d = h.start("max_concurrent_calls = 5\n", extra=CLASSES)
    first = fs.create_call("acme", dest="+19005550100")
    fs.answer(first)
    over = fs.create_call("acme", dest="+4487155501")
    plain = fs.create_call("acme", dest="+442079460000")
    assert wait_for(lambda: h.killed(over))
    assert wait_for(lambda: d.guard.tracker.active("acme") == 2)
    assert not h.killed(first) and not h.killed(plain)
    assert d.writer.flush(5)
    rows = audit(h.conf, capsys, "--account", "acme")
    assert {(r["kind"], r["rule"], r["destination"], r["destination_class"], r["uuid"])
            for r in rows} == {
        ("violation", "max_concurrent_calls", "+4487155501", "premium", over),
        ("hangup", "max_concurrent_calls", "+4487155501", "premium", over)}
    snap = d.guard.snapshot()
    (acme,) = [b for b in snap["busiest"] if b["account"] == "acme"]
    assert acme["classes"] == {"premium": {"active": 1, "limit": 1}}


def test_a_locked_account_s_emergency_call_is_never_touched_and_is_audited(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    d = h.start("max_concurrent_calls = 5\n", extra=CLASSES)
    assert cli(["lock", "acme", "-c", str(h.conf)]) == 0
    assert wait_for(lambda: d.guard.tracker.is_locked("acme"))
    emergency = fs.create_call("acme", dest="112")
    fs.answer(emergency)
    other = fs.create_call("acme", dest="4420")
    assert wait_for(lambda: h.killed(other))
    assert not h.killed(emergency) and d.guard.tracker.active("acme") == 0
    assert d.writer.flush(5)
    rows = audit(h.conf, capsys, "--account", "acme", "--kind", "exempt")
    assert [(r["uuid"], r["destination"], r["destination_class"], r["rule"]) for r in rows] == [
        (emergency, "112", "emergency", None)]


class DaemonProcess:
    """``python -m esl_guard run`` in a process of its own, against the simulator."""

    def __init__(self, conf: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("NOTIFY_SOCKET", None)
        self.proc = gevent.subprocess.Popen(
            [sys.executable, "-m", "esl_guard", "run", "-c", str(conf)], env=env,
            stderr=gevent.subprocess.PIPE, cwd=str(conf.parent))

    def stop(self) -> str:
        """SIGTERM; the exit status must be 0; returns its log."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0
        log = self.proc.stderr.read().decode()
        assert "Traceback" not in log, log
        return log

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_the_minute_budget_window_survives_a_restart_of_the_daemon_process(
        tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> None:
    """max_minutes = 1/1h: a call's minutes are stored when it ends; after a restart they fill
    the window again, with those of earlier runs, and the next call is refused.  The daemon
    runs as ``esl-guard run`` in a process of its own (SQLite and PostgreSQL)."""
    conf = tmp_path / "esl-guard.conf"
    conf.write_text(node_section(fs) + f"\n[database]\nurl = {db_url}\n"
                    f"journal = {tmp_path / 'journal.jsonl'}\npoll_interval = 0.2s\n\n"
                    "[policy]\nmax_minutes = 1/1h\n\n[account:probe]\nmax_concurrent_calls = 0\n")
    conf.chmod(0o600)
    killed = lambda u: any(k == u for k, _ in fs.kills)  # noqa: E731

    def decided(call: str) -> bool:
        """Whether the daemon hung ``call`` up, once it has decided on it: a probe call that is
        always hung up is placed after it."""
        probe = fs.create_call("probe")
        assert wait_for(lambda: killed(probe), timeout=15)
        return killed(call)

    daemon = DaemonProcess(conf)
    store = Store(db_url)
    try:
        assert wait_for(lambda: fs.connections >= 1 and any(
            c.startswith("api show channels") for c in fs.commands), timeout=30)
        short = fs.create_call("acme")
        fs.answer(short)
        answered = time.time()
        assert wait_for(lambda: time.time() > answered + 1.0)
        fs.hangup(short)
        assert not decided(short)
        assert wait_for(lambda: store.minutes_since(0) != [], timeout=15)
        ((account, cls, a, e),) = store.minutes_since(0)
        assert (account, cls) == ("acme", None) and e - a > 0.9  # the call was up 1 s
        # An earlier run's calls, 59.5 s, ended 10 minutes ago: with this one, over 60 s.
        store.apply([{"op": "minutes", "event_id": "earlier-run", "account": "acme",
                      "answered": time.time() - 659.5, "ended": time.time() - 600.0}])
        admitted = fs.create_call("acme")  # this run never saw the earlier minutes
        assert not decided(admitted)
        fs.hangup(admitted)
        daemon.stop()

        fs.commands.clear()
        daemon = DaemonProcess(conf)
        assert wait_for(lambda: any(c.startswith("api show channels") for c in fs.commands),
                        timeout=30)
        refused = fs.create_call("acme")
        assert decided(refused)
        log = daemon.stop()
        assert "restored minute budgets: 2 ended calls" in log, log
        rows = store.audit(account="acme", kinds=["hangup"])
        assert [(r["uuid"], r["rule"], r["clause"]) for r in rows] == [
            (refused, "max_minutes", "network_use")]
    finally:
        daemon.kill()
        store.close()
