"""Destination classes, minute budgets and exempt calls end to end (issue 12): the real daemon
against the simulator over TCP, with its database (SQLite, and PostgreSQL for the restart)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store
from tests.harness import Harness, cli, wait_for

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


@pytest.fixture
def hdb(tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url, fs)
    yield harness
    harness.stop()


def test_the_minute_budget_window_survives_a_restart(hdb: Harness, fs: FakeFreeSWITCH) -> None:
    """A call's minutes are stored when it ends; after a restart they fill the window again
    with those of earlier runs: the next call is refused (max_minutes = 1/1h)."""
    h = hdb
    d = h.start("max_minutes = 1/1h\n")
    short = fs.create_call("acme")
    fs.answer(short)
    answered = time.time()
    assert wait_for(lambda: time.time() > answered + 1.0)
    fs.hangup(short)
    store = Store(h.db_url)
    try:
        assert wait_for(lambda: d.writer.flush(1) and store.minutes_since(0) != [], timeout=10)
        ((account, cls, a, e),) = store.minutes_since(0)
        assert (account, cls) == ("acme", None) and e - a > 0.9  # the call was up 1 s
        # An earlier run's calls, 59.5 s, ended 10 minutes ago: with this one, over 60 s.
        store.apply([{"op": "minutes", "event_id": "earlier-run", "account": "acme",
                      "answered": time.time() - 659.5, "ended": time.time() - 600.0}])
    finally:
        store.close()
    admitted = fs.create_call("acme")  # this run never saw the earlier minutes
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    fs.hangup(admitted)
    assert wait_for(lambda: d.guard.tracker.active("acme") == 0)
    assert h.stop() == 0

    d = h.start()
    refused = fs.create_call("acme")
    assert wait_for(lambda: h.killed(refused))
    assert d.writer.flush(5)
    store = Store(h.db_url)
    try:
        rows = store.audit(account="acme", kinds=["hangup"])
    finally:
        store.close()
    assert [(r["uuid"], r["rule"], r["clause"]) for r in rows] == [
        (refused, "max_minutes", "network_use")]
