"""Running it beside FreeSWITCH: reload, dry run, metrics, systemd notify, signals, watchdog."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import urllib.request
from pathlib import Path

import gevent
import gevent.subprocess
import pytest
from gevent import socket

from esl_guard.cli import main as cli
from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness, node_section, wait_for


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def test_reload_raises_the_limit_and_a_broken_conf_keeps_the_old_one(
        h: Harness, fs: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = h.start("max_concurrent_calls = 1")
    a = fs.create_call("acme", account_on="create")
    b = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(b))
    h.conf.write_text(h.conf.read_text().replace("max_concurrent_calls = 1",
                                                 "max_concurrent_calls = 2"))
    d.request_reload()
    assert wait_for(lambda: "max_concurrent_calls: 1 -> 2" in caplog.text)
    c = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 2)
    assert not h.killed(c) and a in fs.calls()
    h.conf.write_text(h.conf.read_text().replace("max_concurrent_calls = 2",
                                                 "max_concurrent_calls = lots"))
    d.request_reload()
    assert wait_for(lambda: "reload refused" in caplog.text)
    assert "max_concurrent_calls = lots: expected a whole number >= 0" in caplog.text
    e = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(e)), "the old limit (2) still holds"


def test_dry_run_records_what_would_have_been_killed(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    d = h.start("max_concurrent_calls = 1\ndry_run = true\nlock_after = 1/1m")
    fs.create_call("acme", account_on="create")
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.metrics.actions.labels("max_concurrent_calls", "hangup", "true",
                                                     "denial_of_service", "none")._value.get() == 1)
    assert d.writer.flush(5)
    assert fs.kills == [] and over in fs.calls()
    assert "esl_guard" not in fs.hash or not fs.hash["esl_guard"]
    capsys.readouterr()
    assert cli(["audit", "-c", str(h.conf), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["kind"] for r in rows} == {"violation", "hangup", "lock"}
    assert all(r["dry_run"] is True for r in rows)
    assert next(r for r in rows if r["kind"] == "hangup")["uuid"] == over
    assert not d.guard.tracker.is_locked("acme")


def test_metrics_show_calls_and_enforcement(h: Harness, fs: FakeFreeSWITCH) -> None:
    port = free_port()
    h.start("max_concurrent_calls = 1", extra=f"[metrics]\nlisten = 127.0.0.1:{port}\n")
    fs.create_call("acme", account_on="create")
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over))

    def scrape() -> str:
        return gevent.get_hub().threadpool.spawn(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
            .read().decode()).get(timeout=10)

    text = scrape()
    assert "esl_guard_active_calls 1.0" in text
    assert ('esl_guard_actions_total{action="hangup",class="none",clause="denial_of_service",'
            'dry_run="false",rule="max_concurrent_calls"} 1.0') in text
    assert 'esl_guard_esl_connected{node="default"} 1.0' in text
    assert 'esl_guard_events_total{event="CHANNEL_CREATE"} 2.0' in text
    assert "esl_guard_event_to_action_seconds_count 1.0" in text
    assert "esl_guard_untracked_channels_total 0.0" in text
    anonymous = fs.create_call(None)
    fs.hangup(anonymous)
    assert wait_for(lambda: "esl_guard_untracked_channels_total 1.0" in scrape())
    assert "acme" not in text  # no per-account labels


def test_half_open_connection_is_detected_and_reconnected(h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1",
                nodes=node_section(fs, heartbeat_interval="0.3s", command_timeout="0.5s"))
    link = d.guard.links["default"]
    fs.api_delay = 30.0  # the peer goes silent: no events, no replies
    assert wait_for(lambda: link.reconnects >= 1, timeout=10)
    fs.api_delay = 0.0
    assert wait_for(lambda: link.connected and d.guard.sync["default"].ok, timeout=15)


def test_status_command_reports_nodes_calls_and_locks(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    d = h.start("max_concurrent_calls = 5")
    for _ in range(3):
        fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 3)
    assert cli(["lock", "mallory", "-c", str(h.conf), "--reason", "shared credentials"]) == 0
    assert wait_for(lambda: "mallory" in fs.hash.get("esl_guard", {}))
    d.store.apply([{"op": "status", "time": d.guard.wall(), "body": d.guard.snapshot()}])
    capsys.readouterr()
    assert cli(["status", "-c", str(h.conf)]) == 0
    out = capsys.readouterr().out
    assert "daemon: running" in out and "connected" in out
    assert "active calls: 3" in out
    assert "acme" in out and "3 / 5" in out
    assert "mallory" in out and "shared credentials" in out


def test_the_real_process_notifies_systemd_reloads_on_sighup_and_exits_0_on_sigterm(
        tmp_path: Path, fs: FakeFreeSWITCH) -> None:
    notify_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    h = Harness(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}", fs)
    conf = h.write("max_concurrent_calls = 1")
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="400000",
               PYTHONPATH=str(Path(__file__).parent.parent))
    env.pop("WATCHDOG_PID", None)
    proc = gevent.subprocess.Popen([sys.executable, "-m", "esl_guard", "run", "-c", str(conf)],
                                   env=env, stderr=gevent.subprocess.PIPE)
    messages: list[str] = []

    def receive() -> None:
        while True:
            messages.append(sock.recv(4096).decode())

    reader = gevent.spawn(receive)
    try:
        assert wait_for(lambda: any(m.startswith("READY=1") for m in messages), timeout=20)
        assert wait_for(lambda: messages.count("WATCHDOG=1") >= 2, timeout=5)
        # subscribed (the channel list is asked for after that) and the list's own connection
        # closed: calls created now are new calls, not calls that were up before
        assert wait_for(lambda: fs.connections == 1
                        and any(c.startswith("api show channels") for c in fs.commands))
        a = fs.create_call("acme", account_on="create")
        b = fs.create_call("acme", account_on="create")
        assert wait_for(lambda: any(u == b for u, _ in fs.kills))
        conf.write_text(conf.read_text().replace("max_concurrent_calls = 1",
                                                 "max_concurrent_calls = 3"))
        n_ready = sum(m.startswith("READY=1") for m in messages)
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: sum(m.startswith("READY=1") for m in messages) > n_ready, timeout=10)
        c = fs.create_call("acme", account_on="create")
        d = fs.create_call("acme", account_on="create")
        assert wait_for(lambda: len(fs.calls()) == 3)
        assert {a, c, d} == set(fs.calls())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "STOPPING=1" in messages
        stderr = proc.stderr.read().decode()
        assert "Traceback" not in stderr and "reload: [policy] max_concurrent_calls: 1 -> 3" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.kill()
        sock.close()
