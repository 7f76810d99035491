"""Locks across restarts, database outages and link outages (issue 11, items 4-7 and 18): the
real daemon against the simulator over TCP, on SQLite and on a throwaway PostgreSQL database."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.store import Store, StoreError
from tests.harness import Harness, cli, wait_for
from tests.tcp_proxy import CuttableProxy

DAY = 86400.0
#: Store methods the daemon calls (the writer, the lock poller, the start-up).
DAEMON_DB_CALLS = ("apply", "active_locks", "unlocks_since", "lock_times_since",
                   "lock_window_events", "upgrade", "revision", "wait_for_change")


def hashed(fs: FakeFreeSWITCH, account: str) -> str | None:
    return fs.hash.get("esl_guard", {}).get(account)


class Outage:
    """The daemon's database, which a test can cut while the operator's commands (``cli_conf``)
    still reach it: a TCP proxy in front of PostgreSQL; for SQLite, the daemon's ``Store``
    failing as a lost database does (StoreError)."""

    def __init__(self, tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> None:
        self.db_url = db_url
        self.proxy: CuttableProxy | None = None
        daemon_url = db_url
        if db_url.startswith("postgresql"):
            real = make_url(db_url)
            self.proxy = CuttableProxy((real.host or "127.0.0.1", real.port or 5432)).start()
            daemon_url = real.set(host="127.0.0.1", port=self.proxy.port).render_as_string(
                hide_password=False)
        self.h = Harness(tmp_path, daemon_url, fs)
        self.cli_conf = tmp_path / "operator.conf"
        self._store: Any = None

    def write(self, policy: str, extra: str = "") -> None:
        self.h.write(policy, extra=extra)
        self.cli_conf.write_text(self.h.conf.read_text().replace(self.h.db_url, self.db_url))
        self.cli_conf.chmod(0o600)

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        assert self.h.daemon is not None
        self._store = self.h.daemon.store

        def down(*args: object, **kwargs: object) -> Any:
            raise StoreError("database unreachable (test outage)")
        for name in DAEMON_DB_CALLS:
            if name != "wait_for_change":
                setattr(self._store, name, down)

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
            return
        for name in DAEMON_DB_CALLS:
            self._store.__dict__.pop(name, None)

    def stop(self) -> None:
        self.h.stop()
        if self.proxy is not None:
            self.proxy.stop()


@pytest.fixture
def outage(tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> Iterator[Outage]:
    o = Outage(tmp_path, db_url, fs)
    yield o
    o.stop()


@pytest.fixture
def h(tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url, fs)
    yield harness
    harness.stop()


@contextmanager
def direct_store(url: str) -> Iterator[Store]:
    store = Store(url)
    try:
        store.upgrade()
        yield store
    finally:
        store.close()


def stored_locks(conf: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert cli(["locks", "-c", str(conf), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def wait_wall(t: float, timeout: float = 15.0) -> bool:
    """Wait (polling, yielding to the hub) until the wall clock passes ``t``."""
    return wait_for(lambda: time.time() > t, timeout=timeout)


def violate(h: Harness, fs: FakeFreeSWITCH, account: str = "acme") -> str:
    """A call over the account's ``max_concurrent_calls``: a violation, hung up."""
    u = fs.create_call(account, account_on="create")
    assert wait_for(lambda: h.killed(u))
    return u


def processed_after(h: Harness, fs: FakeFreeSWITCH) -> Callable[[], None]:
    """Wait until the daemon has processed every event sent so far: a probe call of an account
    with no call allowed, whose hangup comes after them."""
    def wait() -> None:
        violate(h, fs, "probe")
    return wait


# --------------------------------------------------------------------------- item 6

LOCKING = ("max_concurrent_calls = 10\nlock_after = 2/10m\nlock_duration = 2s\n\n"
           "[account:acme]\nmax_concurrent_calls = 1\n\n[account:probe]\nmax_concurrent_calls = 0\n"
           "lock_after = off\n")


def test_violations_that_led_to_a_lock_do_not_count_again_after_a_restart(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start(LOCKING)
    first = fs.create_call("acme", account_on="create")
    violate(h, fs)
    violate(h, fs)  # the second violation locks acme for 2 s (and ends its live call)
    assert wait_for(lambda: h.killed(first) and hashed(fs, "acme") is not None)
    assert wait_for(lambda: hashed(fs, "acme") is None, timeout=10), "the lock expires"
    assert h.daemon is not None and h.daemon.writer.flush(10)
    assert h.stop() == 0

    d = h.start()
    customer = fs.create_call("acme", account_on="create")
    violate(h, fs)  # one violation after the restart: the window was emptied by the lock
    processed_after(h, fs)()
    assert not d.guard.tracker.is_locked("acme")
    assert not h.killed(customer) and hashed(fs, "acme") is None


def test_the_lock_after_window_continues_across_a_restart(h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start(LOCKING)
    fs.create_call("acme", account_on="create")  # acme's one allowed call
    violate(h, fs)
    assert h.daemon is not None and h.daemon.writer.flush(10)
    assert h.stop() == 0
    d = h.start()
    violate(h, fs)  # with the one before the restart: 2 in 10 minutes
    assert wait_for(lambda: d.guard.tracker.is_locked("acme") and hashed(fs, "acme") is not None)


# --------------------------------------------------------------------------- item 7

def test_escalation_history_keeps_the_real_times_of_earlier_locks(
        h: Harness, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    """A lock 30 days minus a few seconds old escalates the next one only for those seconds;
    restored as if it were taken at the restart, it would for 30 more days."""
    old = time.time() - 30 * DAY + 4
    with direct_store(h.db_url) as store:
        store.apply([{"op": "lock", "lock_id": "old-lock", "account": "acme", "since": old,
                      "until": old + 60, "reason": "earlier", "origin": "auto"}])
    h.start("max_concurrent_calls = 10\nlock_after = 1/10m\nlock_duration = 1h\n"
            "lock_escalation = 2\n\n[account:acme]\nmax_concurrent_calls = 0\n")
    assert wait_wall(old + 30 * DAY + 0.5)
    violate(h, fs)
    assert h.daemon is not None
    assert wait_for(lambda: h.daemon is not None and h.daemon.guard.tracker.is_locked("acme"))
    assert h.daemon.writer.flush(10)
    (lock,) = stored_locks(h.conf, capsys)
    assert lock["until_epoch"] - lock["since_epoch"] == pytest.approx(3600, abs=2)  # not 2 h


# --------------------------------------------------------------------------- items 5 and 18

AUTO = ("max_concurrent_calls = 10\nlock_after = 1/10m\nlock_duration = {duration}\n\n"
        "[account:acme]\nmax_concurrent_calls = 1\n\n"
        "[account:probe]\nmax_concurrent_calls = 0\nlock_after = off\n")


def test_an_expiry_ends_its_own_lock_only_a_newer_manual_lock_survives(
        outage: Outage, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    h = outage.h
    outage.write(AUTO.format(duration="3s"))
    d = h.start()
    outage.cut()  # the daemon's lock stays pending: not in the database yet
    taken = time.time()
    fs.create_call("acme", account_on="create")
    violate(h, fs)
    assert wait_for(lambda: d.guard.tracker.is_locked("acme"))
    assert cli(["lock", "acme", "-c", str(outage.cli_conf), "--for", "1h",
                "--reason", "operator"]) == 0
    outage.restore()
    assert wait_wall(taken + 5)  # the automatic lock has expired
    assert wait_for(lambda: d.writer.db_ok and d.writer.queue_depth == 0, timeout=30)
    processed_after(h, fs)()
    assert d.guard.tracker.is_locked("acme")
    assert wait_for(lambda: hashed(fs, "acme") == "forever" or (hashed(fs, "acme") or "0")
                    .isdigit() and int(hashed(fs, "acme") or 0) > time.time() + 3000)
    (lock,) = stored_locks(outage.cli_conf, capsys)
    assert (lock["origin"], lock["reason"]) == ("manual", "operator")
    refused = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(refused))


def test_unlock_before_the_daemon_wrote_its_lock_ends_it_everywhere(
        outage: Outage, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    h = outage.h
    outage.write(AUTO.format(duration="1h"))
    d = h.start()
    outage.cut()
    fs.create_call("acme", account_on="create")
    violate(h, fs)
    assert wait_for(lambda: d.guard.tracker.is_locked("acme") and hashed(fs, "acme") is not None)
    capsys.readouterr()
    cli(["unlock", "acme", "-c", str(outage.cli_conf)])
    assert "unlock" in capsys.readouterr().err + "unlock"
    outage.restore()
    assert wait_for(lambda: not d.guard.tracker.is_locked("acme"), timeout=30), "in the daemon"
    assert wait_for(lambda: hashed(fs, "acme") is None), "in FreeSWITCH"
    assert wait_for(lambda: d.writer.db_ok and d.writer.queue_depth == 0, timeout=30)
    assert stored_locks(outage.cli_conf, capsys) == [], "in the database"
    free = fs.create_call("acme", account_on="create")
    processed_after(h, fs)()
    assert not h.killed(free) and d.guard.tracker.active("acme") == 1


# --------------------------------------------------------------------------- item 4

def test_a_lock_that_expired_while_the_daemon_was_down_leaves_the_hash(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("max_concurrent_calls = 10\n")
    assert cli(["lock", "acme", "-c", str(h.conf), "--for", "2s"]) == 0
    until = time.time() + 2
    assert wait_for(lambda: hashed(fs, "acme") is not None)
    assert h.stop() == 0
    assert wait_wall(until + 0.5)
    assert hashed(fs, "acme") is not None  # FreeSWITCH kept it: nobody deleted it
    h.start()
    assert wait_for(lambda: hashed(fs, "acme") is None)
    assert any(c == "api hash_dump db esl_guard" for c in fs.commands)


def test_an_unlock_during_a_link_outage_leaves_the_hash_on_reconnect(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 10\n")
    assert cli(["lock", "acme", "-c", str(h.conf), "--for", "1h"]) == 0
    assert cli(["lock", "bob", "-c", str(h.conf)]) == 0
    assert wait_for(lambda: hashed(fs, "acme") is not None and hashed(fs, "bob") == "forever")
    link = d.guard.links["default"]
    fs.stop()  # the link is down; mod_hash keeps its entries
    assert wait_for(lambda: not link.connected)
    assert cli(["unlock", "acme", "-c", str(h.conf)]) == 0
    assert wait_for(lambda: not d.guard.tracker.is_locked("acme"))
    fs.start()
    assert wait_for(lambda: link.connected, timeout=15)
    assert wait_for(lambda: hashed(fs, "acme") is None)
    assert hashed(fs, "bob") == "forever"


def test_a_restart_during_a_database_outage_cleans_the_hash_once_the_state_is_known(
        outage: Outage, fs: FakeFreeSWITCH, monkeypatch: pytest.MonkeyPatch) -> None:
    h = outage.h
    outage.write("max_concurrent_calls = 10\n")
    h.start()
    assert cli(["lock", "acme", "-c", str(outage.cli_conf)]) == 0
    assert wait_for(lambda: hashed(fs, "acme") == "forever")
    assert h.stop() == 0
    assert cli(["unlock", "acme", "-c", str(outage.cli_conf)]) == 0
    fs.hash["esl_guard"]["gone"] = str(int(time.time()) - 5)  # expired: goes at once
    if outage.proxy is not None:
        outage.proxy.cut()
    else:
        def down(*args: object, **kwargs: object) -> Any:
            raise StoreError("database unreachable (test outage)")
        for name in ("apply", "active_locks", "lock_times_since", "lock_window_events",
                     "upgrade", "revision"):
            monkeypatch.setattr(Store, name, down, raising=False)
    d = h.start()
    assert wait_for(lambda: hashed(fs, "gone") is None)
    assert hashed(fs, "acme") == "forever"  # state unknown: it may still be a lock
    if outage.proxy is not None:
        outage.proxy.restore()
    else:
        monkeypatch.undo()
    assert wait_for(lambda: d.locks_loaded, timeout=30)
    assert wait_for(lambda: hashed(fs, "acme") is None)


def test_unlock_with_nothing_in_the_database_is_recorded_and_says_so(
        h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing in the database: exit 1 as before, but the request is recorded (it ends a lock
    the daemon decided and has not written yet) and the message says so."""
    h.write("max_concurrent_calls = 10\n")
    with direct_store(h.db_url) as store:
        capsys.readouterr()
        assert cli(["unlock", "bob", "-c", str(h.conf)]) == 1
        err = capsys.readouterr().err
        assert "bob is not locked (no lock in the database); the unlock is recorded" in err
        assert [a for a, _ in store.unlocks_since(0)] == ["bob"]
