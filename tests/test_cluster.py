"""High availability (issue 14): two real `esl-guard run` processes with the same conf on a
throwaway PostgreSQL database, against the simulator over TCP.  Only the active instance acts;
SIGKILL of the active -> the standby takes over and ends the call that went over its limit
during the gap, and no other; the database cut -> no promotion, one active afterwards; the
audit trail holds each decision once."""
from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gevent.subprocess
import pytest
from sqlalchemy.engine import make_url

from esl_guard.config import load_config
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.status import render_status
from esl_guard.store import Store
from tests.harness import node_section, wait_for
from tests.tcp_proxy import CuttableProxy

ROOT = Path(__file__).parent.parent
FAILOVER = 3.0  # [cluster] failover_after of these tests
UP = 30.0       # deadline for a process to start, connect and resync (a busy 2-core machine)


class Instance:
    """One `esl-guard run` process: its own conf directory (same conf, its own journal)."""

    def __init__(self, tmp: Path, name: str, conf_text: str) -> None:
        self.dir = tmp / name
        (self.dir / "conf.d").mkdir(parents=True)
        conf = self.dir / "esl-guard.conf"
        conf.write_text(conf_text)
        (self.dir / "conf.d" / "instance.conf").write_text(
            f"[database]\njournal = {self.dir / 'journal.jsonl'}\n")
        for f in (conf, self.dir / "conf.d" / "instance.conf"):
            f.chmod(0o600)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("NOTIFY_SOCKET", None)
        self.log = open(self.dir / "stderr.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = gevent.subprocess.Popen(
            [sys.executable, "-m", "esl_guard", "run", "-c", str(conf)], env=env,
            stderr=self.log, cwd=str(self.dir))

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def stderr(self) -> str:
        return (self.dir / "stderr.log").read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except gevent.subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def conf_text(fs: FakeFreeSWITCH, url: str, policy: str) -> str:
    return (node_section(fs, resync_interval="2s") + f"\n[database]\nurl = {url}\n"
            "poll_interval = 0.2s\n\n"
            f"[cluster]\nfailover_after = {FAILOVER:g}s\n\n[policy]\n{policy}\n")


def roles(url: str) -> dict[int, str]:
    """pid -> role of the group's instances, as their leadership connections last wrote."""
    store = Store(url)
    try:
        return {m["pid"]: m["role"] for m in store.members()}
    finally:
        store.close()


def audit(url: str, kinds: tuple[str, ...]) -> list[dict[str, object]]:
    store = Store(url)
    try:
        return store.audit(kinds=kinds)
    finally:
        store.close()


def kill_commands(fs: FakeFreeSWITCH, uuid: str) -> int:
    return sum(1 for c in fs.commands if f"uuid_kill {uuid} " in c)


def resyncs(fs: FakeFreeSWITCH) -> int:
    return sum(1 for c in fs.commands if c.startswith("api show channels"))


@pytest.fixture
def group(tmp_path: Path) -> Iterator[list[Instance]]:
    started: list[Instance] = []
    yield started
    for inst in started:
        inst.stop()
    for inst in started:
        assert "Traceback" not in inst.stderr(), inst.stderr()


def start_pair(tmp_path: Path, group: list[Instance], fs: FakeFreeSWITCH, url: str,
               policy: str, daemon_url: str | None = None) -> tuple[Instance, Instance]:
    """A becomes active, then B starts and is standby; both follow the node.  ``url`` is
    the test's way to the database, ``daemon_url`` (default: the same) the daemons'."""
    text = conf_text(fs, daemon_url or url, policy)
    a = Instance(tmp_path, "a", text)
    group.append(a)
    assert wait_for(lambda: roles(url).get(a.pid) == "active", timeout=UP), a.stderr()
    b = Instance(tmp_path, "b", text)
    group.append(b)
    assert wait_for(lambda: roles(url).get(b.pid) == "standby", timeout=UP), b.stderr()
    asked = resyncs(fs)
    assert wait_for(lambda: fs.connections >= 2 and resyncs(fs) > asked, timeout=UP)
    return a, b


def test_only_the_active_acts_and_each_decision_is_stored_once(
        tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH, group: list[Instance]) -> None:
    """Three calls over the limit: three uuid_kill (one per call), three hangup rows, one
    lock (not two), though two instances follow the same calls."""
    a, b = start_pair(tmp_path, group, fs, pg_url,
                      "max_concurrent_calls = 0\nlock_after = 3/1m\nlock_duration = 1h")
    calls = []
    for _ in range(3):
        uuid = fs.create_call("acme")
        calls.append(uuid)
        assert wait_for(lambda u=uuid: kill_commands(fs, u) >= 1, timeout=10)
    assert wait_for(lambda: any("hash insert/esl_guard/acme/" in c for c in fs.commands),
                    timeout=10)
    assert wait_for(lambda: len(audit(pg_url, ("lock",))) >= 1, timeout=10)
    # The standby, following the same events, also decided those hangups and that lock: give
    # it every chance to (wrongly) act -- a full resync of the node after the lock.
    asked = resyncs(fs)
    assert wait_for(lambda: resyncs(fs) >= asked + 2, timeout=UP)
    assert [kill_commands(fs, u) for u in calls] == [1, 1, 1]
    assert sum(1 for c in fs.commands if "hash insert/esl_guard/acme/" in c) == 1
    hangups = audit(pg_url, ("hangup",))
    assert sorted(str(r["uuid"]) for r in hangups) == sorted(calls)
    assert len(audit(pg_url, ("violation",))) == 3
    assert len(audit(pg_url, ("lock",))) == 1
    store = Store(pg_url)
    try:
        locks = store.active_locks(time.time())
    finally:
        store.close()
    assert [lk.account for lk in locks] == ["acme"]
    assert roles(pg_url) == {a.pid: "active", b.pid: "standby"}
    # `esl-guard status` lists the instances and names the active one (the stored report is
    # written every STATUS_EVERY seconds: wait for the first)
    host = socket.gethostname()
    assert wait_for(lambda: "daemon: running (active" in status(pg_url, a), timeout=15)
    out = status(pg_url, a)
    assert f"instances: 2, active: {host} pid {a.pid}" in out
    assert re.search(rf"^  {re.escape(host)} +pid {b.pid} +standby +since ", out, re.M), out
    assert f"daemon: running (active on {host} pid {a.pid})" in out


def status(url: str, inst: Instance) -> str:
    store = Store(url)
    try:
        return render_status(store, load_config(inst.dir / "esl-guard.conf"), as_json=False,
                             now=time.time())
    finally:
        store.close()


def test_sigkill_of_the_active_the_standby_takes_over_with_the_state_it_holds(
        tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH, group: list[Instance]) -> None:
    a, b = start_pair(tmp_path, group, fs, pg_url, "max_concurrent_calls = 2")
    store = Store(pg_url)
    try:
        store.manual_lock("bad", until=None, reason="fraud", now=time.time())
    finally:
        store.close()
    assert wait_for(lambda: any("hash insert/" in c and "/bad/" in c for c in fs.commands),
                    timeout=10)
    within = [fs.create_call("acme"), fs.create_call("acme")]
    for uuid in within:
        fs.answer(uuid)
    pushes = sum(1 for c in fs.commands if "hash insert/" in c and "/bad/" in c)
    # The gap: the active is frozen (it holds the leadership and acts on nothing) when a third
    # call of acme goes over the limit; the standby sees it and leaves it to the active.
    a.proc.send_signal(signal.SIGSTOP)
    over = fs.create_call("acme")
    fs.answer(over)
    assert wait_for(lambda: f"hangup of acme (max_concurrent_calls, uuid={over})" in b.stderr(),
                    timeout=10)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    assert wait_for(lambda: roles(pg_url).get(b.pid) == "active", timeout=FAILOVER + 10), \
        b.stderr()
    assert wait_for(lambda: kill_commands(fs, over) == 1, timeout=10), b.stderr()
    # the locks pushed again by the new active
    assert wait_for(lambda: sum(1 for c in fs.commands if "hash insert/" in c and "/bad/" in c)
                    > pushes, timeout=10)
    # no call within the limits hung up because of the takeover, even after a full resync
    asked = resyncs(fs)
    assert wait_for(lambda: resyncs(fs) >= asked + 2, timeout=UP)
    assert [kill_commands(fs, u) for u in within] == [0, 0]
    assert [r["uuid"] for r in audit(pg_url, ("hangup",))] == [over]
    assert "standby -> active" in b.stderr()
    assert "takeover: 1 locks pushed, 1 calls over their limits hung up" in b.stderr()
    role_rows = audit(pg_url, ("role",))
    assert [str(r["detail"]).split(": ")[1] for r in role_rows] == ["standby -> active"]


def test_database_cut_no_promotion_then_one_active(
        tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH, group: list[Instance]) -> None:
    real = make_url(pg_url)
    proxy = CuttableProxy((real.host or "127.0.0.1", real.port or 5432)).start()
    try:
        url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        a, b = start_pair(tmp_path, group, fs, pg_url, "max_concurrent_calls = 1", url)
        proxy.cut()
        cut_at = time.time()
        # Enforcement goes on from memory, by the active only, for the whole cut.
        first = fs.create_call("acme")
        killed = []
        deadline = time.monotonic() + 10 * FAILOVER
        while time.monotonic() < deadline:
            over = fs.create_call("acme")
            assert wait_for(lambda u=over: kill_commands(fs, u) >= 1, timeout=10)
            killed.append(over)
            gevent.sleep(FAILOVER)  # spacing the calls over the cut, not synchronisation
        assert kill_commands(fs, first) == 0
        proxy.restore()

        def settled() -> bool:
            now = roles(pg_url)
            return sorted(now.values()) == ["active", "standby"] and all(
                m["last_seen"] > cut_at for m in members(pg_url))
        assert wait_for(settled, timeout=FAILOVER + 20)
        late = fs.create_call("acme")
        assert wait_for(lambda: kill_commands(fs, late) >= 1, timeout=10)
        asked = resyncs(fs)
        assert wait_for(lambda: resyncs(fs) >= asked + 2, timeout=UP)
        assert [kill_commands(fs, u) for u in [*killed, late]] == [1] * (len(killed) + 1)
        assert wait_for(lambda: len(audit(pg_url, ("hangup",))) == len(killed) + 1, timeout=20)
        # the standby never promoted itself during the cut (it acted on none of the calls
        # above); after it, whichever holds the lock acts alone (usually the old active,
        # which retries at once while a standby waits two checks)
        if "standby -> active" in b.stderr():
            assert "active -> standby" in a.stderr()
    finally:
        proxy.stop()


def members(url: str) -> list[dict[str, object]]:
    store = Store(url)
    try:
        return store.members()
    finally:
        store.close()
