"""What the real daemon process logs when it restarts over its SQLite database (issue 16, bug
4): the state it restores is one INFO line per kind, with counts, never the old locks again as
new ``lock:`` decisions."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import cli, wait_for
from tests.process import DaemonProcess

POLICY = ("max_concurrent_calls = 5\nlock_after = 1/10m\nlock_duration = 1h\n\n"
          "[account:acme]\nmax_concurrent_calls = 0\n\n"
          "[account:bob]\nmax_concurrent_calls = 1\nlock_after = 3/10m\n")


@pytest.fixture
def proc(tmp_path: Path, fs: FakeFreeSWITCH) -> Iterator[DaemonProcess]:
    p = DaemonProcess.over_sqlite(tmp_path, fs, POLICY)
    yield p
    p.stop()


def killed(fs: FakeFreeSWITCH, uuid: str) -> bool:
    return any(u == uuid for u, _ in fs.kills)


def test_a_restart_logs_the_restored_state_once_per_kind_not_the_old_locks_again(
        proc: DaemonProcess, fs: FakeFreeSWITCH) -> None:
    proc.start()
    over = fs.create_call("acme", account_on="create")  # a violation -> an automatic lock
    assert wait_for(lambda: killed(fs, over), timeout=10)
    fs.create_call("bob", account_on="create")
    bob = fs.create_call("bob", account_on="create")  # one violation of bob's 3/10m
    assert wait_for(lambda: killed(fs, bob), timeout=10)
    assert cli(["lock", "mallory", "-c", str(proc.conf), "--reason", "fraud"]) == 0
    assert wait_for(lambda: "lock: account=mallory" in proc.log(), timeout=10)
    assert wait_for(lambda: "lock: account=acme" in proc.log(), timeout=10)
    assert proc.stop() == 0

    proc.start()
    assert proc.stop() == 0
    second = proc.log()
    assert not re.search(r"WARNING \S+: lock: ", second), second
    restored = [line for line in second.splitlines() if " restored " in line]
    assert any(" INFO " in line and "2 active locks (1 automatic, 1 manual)" in line
               for line in restored), second
    assert any(" INFO " in line and "1 recent violation of 1 account" in line
               for line in restored), second
    # escalation counts automatic locks only
    assert any(" INFO " in line and "1 earlier lock of 1 account" in line
               for line in restored), second
    assert len(restored) == 3, restored
