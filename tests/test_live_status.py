"""`esl-guard status` asks the running daemon (issue 16, live status): the real daemon process
against the simulator over TCP; the CLI reaches it over the control socket in the state
directory and shows a call started a moment ago, without waiting for a stored report."""
from __future__ import annotations

import json
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esl_guard.control import ControlError, ask, socket_path
from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import cli, wait_for
from tests.process import DaemonProcess

POLICY = ("max_concurrent_calls = 5\nmax_call_rate = 10/1m\nlock_after = 3/10m\n\n"
          "[account:mallory]\nmax_concurrent_calls = 0\n")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short directory: a Unix socket path must fit in 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="eg-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def proc(state_dir: Path, fs: FakeFreeSWITCH) -> Iterator[DaemonProcess]:
    p = DaemonProcess.over_sqlite(state_dir, fs, POLICY)
    yield p
    p.stop()


def status(conf: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert cli(["status", "-c", str(conf), *args]) == 0
    return capsys.readouterr().out


def status_json(conf: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    return dict(json.loads(status(conf, capsys, "--json", *args)))


def test_status_shows_a_call_started_a_moment_ago(
        proc: DaemonProcess, fs: FakeFreeSWITCH, state_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    proc.start()
    sock = socket_path(str(state_dir / "journal.jsonl"))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660  # the service's user and group
    before = status_json(proc.conf, capsys)
    assert before["source"] == "live" and before["snapshot"]["active_calls"] == 0
    uuid = fs.create_call("acme", account_on="create")
    # the daemon's own answer, not a stored report: it counts the call once it processed the
    # CHANNEL_CREATE (the stored report is written every 5 s)
    assert wait_for(lambda: status_json(proc.conf, capsys)["snapshot"]["active_calls"] == 1,
                    timeout=5)
    doc = status_json(proc.conf, capsys)
    assert doc["state"] == "running" and doc["snapshot_age"] == 0
    assert doc["snapshot"]["busiest"] == [{"account": "acme", "active": 1, "limit": 5}]
    text = status(proc.conf, capsys)
    assert "daemon: running" in text and ", live;" in text
    assert "asked of the daemon over its control socket" in text
    assert "active calls: 1" in text and "1 / 5" in text

    account = status_json(proc.conf, capsys, "acme")
    live = account["live"]
    assert account["source"] == "live" and live["live_calls"] == 1
    assert live["by_node"] == {"default": 1}
    assert [c["uuid"] for c in live["calls"]] == [uuid]
    windows = {w["rule"]: w for w in live["windows"]}
    assert windows["max_concurrent_calls"]["observed"] == 1
    assert windows["max_concurrent_calls"]["limit"] == 5
    assert windows["max_call_rate"]["observed"] == 1
    assert windows["max_call_rate"]["limit"] == "10/1m"
    assert windows["lock_after"]["observed"] == 0
    text = status(proc.conf, capsys, "acme")
    assert "live calls: 1 (by node: default 1)" in text and uuid in text
    assert "max_call_rate" in text and "10/1m" in text and "not locked" in text


def test_status_of_an_account_shows_its_lock_and_last_decisions(
        proc: DaemonProcess, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    proc.start()
    refused = fs.create_call("mallory", account_on="create")
    assert wait_for(lambda: any(u == refused for u, _ in fs.kills), timeout=10)
    assert cli(["lock", "mallory", "-c", str(proc.conf), "--reason", "fraud"]) == 0
    assert wait_for(lambda: status_json(proc.conf, capsys, "mallory")["live"]["locked"])
    assert wait_for(lambda: len(status_json(proc.conf, capsys, "mallory")["decisions"]) >= 3,
                    timeout=10)  # the violation and hangup (written by the daemon), the lock
    text = status(proc.conf, capsys, "mallory")
    assert "locked until forever (manual" in text and "fraud" in text
    assert "last decisions (audit trail):" in text and refused in text
    windows = {w["rule"]: w for w in status_json(proc.conf, capsys, "mallory")["limits"]}
    assert windows["max_concurrent_calls"]["limit"] == 0


def test_status_falls_back_to_the_stored_report_and_says_how_old(
        proc: DaemonProcess, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    proc.start()
    assert proc.stop() == 0  # a clean stop: the socket goes, the last report says stopped
    doc = status_json(proc.conf, capsys)
    assert doc["source"] == "stored" and "no control socket" in doc["unreachable"]
    assert doc["state"] == "stopped" and doc["snapshot_age"] >= 0
    text = status(proc.conf, capsys)
    assert text.startswith("daemon: stopped at ")
    assert "daemon not reachable: no control socket" in text
    assert "showing its last stored report, " in text and " old)" in text
    text = status(proc.conf, capsys, "acme")
    assert "daemon not reachable" in text and "max_call_rate" in text and "10/1m" in text


def test_a_stale_socket_file_is_replaced_and_a_foreign_file_never_deleted(
        state_dir: Path) -> None:
    import socket

    from esl_guard.control import ControlServer

    path = state_dir / "esl-guard.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # a socket file nobody answers on: a crashed daemon's
    server = ControlServer(path, lambda req: {"ok": True, "echo": req.get("get")})
    server.start()
    try:
        from gevent import socket as gsocket

        assert ask(path, {"get": "x"}, sockets=gsocket) == {"ok": True, "echo": "x"}
        with pytest.raises(OSError, match="another esl-guard daemon answers"):
            ControlServer(path, lambda req: {}).start()
    finally:
        server.stop()
    assert not path.exists()
    path.write_text("operator's notes")
    with pytest.raises(OSError, match="not a socket"):
        ControlServer(path, lambda req: {}).start()
    assert path.read_text() == "operator's notes"
    with pytest.raises(ControlError, match="nothing answers|no answer"):
        ask(path, {"get": "status"})


def test_status_account_counts_live_calls_by_destination_class(
        state_dir: Path, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    """`status ACCOUNT` shows an account's live calls by destination class (issue 12)."""
    p = DaemonProcess.over_sqlite(state_dir, fs, POLICY + "\n[destination:premium]\n"
                                  "prefixes = 1900\nmax_concurrent_calls = 3\n")
    try:
        p.start()
        premium = fs.create_call("acme", account_on="create", dest="+19005550100")
        fs.create_call("acme", account_on="create", dest="9001")
        assert wait_for(lambda: status_json(p.conf, capsys, "acme")["live"]["live_calls"] == 2)
        live = status_json(p.conf, capsys, "acme")["live"]
        assert live["by_class"] == {"premium": 1}
        assert {c["uuid"]: c["class"] for c in live["calls"]}[premium] == "premium"
    finally:
        p.stop()
