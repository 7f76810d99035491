"""Calls, nodes and reconciliation (issue 11, items 1, 3, 10, 11, 17), over real TCP.

A node that stays unreachable stops counting; a hangup decided while a node's link is down is
carried out after the reconnect if the call is still up; a channel list that lags behind events
neither brings an ended call back nor drops a new one; a late event never revives a call;
accounts without live calls are forgotten within minutes.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.config import load_config
from esl_guard.policy import ACCOUNT_IDLE
from esl_guard.service import Guard
from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness, cli, node_section, wait_for
from tests.tcp_proxy import CuttableProxy
from tests.test_reload import reload


def proxied_node(proxy: CuttableProxy, fs: FakeFreeSWITCH, name: str | None = None,
                 **extra: str) -> str:
    """A [freeswitch] section that reaches ``fs`` through ``proxy`` (a link the test cuts)."""
    return node_section(fs, name, **extra).replace(f"port = {fs.port}", f"port = {proxy.port}")


@pytest.fixture
def proxy(fs: FakeFreeSWITCH) -> Iterator[CuttableProxy]:
    p = CuttableProxy(("127.0.0.1", fs.port)).start()
    yield p
    p.stop()


def resyncs(h: Harness, node: str = "default") -> float:
    assert h.daemon is not None
    return float(h.daemon.metrics.resyncs.labels(node, "ok")._value.get())


def hangup_rows(h: Harness) -> list[str]:
    assert h.daemon is not None
    return sorted(r["uuid"] for r in h.daemon.store.audit() if r["kind"] == "hangup")


# ------------------------------------------------------------------ item 1: a lost node
def test_calls_of_a_lost_node_stop_counting_and_its_resync_adopts_them_again(
        tmp_path: Path) -> None:
    fs1, fs2 = FakeFreeSWITCH().start(), FakeFreeSWITCH().start()
    proxy = CuttableProxy(("127.0.0.1", fs1.port)).start()
    h = Harness(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", fs1)
    try:
        nodes = (proxied_node(proxy, fs1, "fs1", node_lost_after="1s")
                 + node_section(fs2, "fs2"))
        d = h.start("max_concurrent_calls = 2", nodes=nodes, wait_nodes=2)
        a = fs1.create_call("acme", account_on="create")
        b = fs1.create_call("acme", account_on="create")
        assert wait_for(lambda: d.guard.tracker.active("acme") == 2)
        proxy.cut()  # fs1 unreachable; its two calls go on
        assert wait_for(lambda: d.guard.tracker.active("acme") == 0, timeout=10), \
            "the calls of an unreachable node count forever"
        c = fs2.create_call("acme", account_on="create")
        assert wait_for(lambda: c in d.guard.tracker.nodes["fs2"])
        assert d.guard.tracker.active("acme") == 1 and fs2.kills == []
        proxy.restore()
        assert wait_for(lambda: d.guard.links["fs1"].connected and d.guard.sync["fs1"].ok
                        and d.guard.tracker.active("acme") == 3, timeout=40)
        assert fs1.kills == [] and fs2.kills == []  # adopted back: no limit check, no hangup
        assert {a, b} <= set(fs1.calls()) and c in fs2.calls()
    finally:
        h.stop()
        proxy.stop()
        fs1.stop()
        fs2.stop()


# ------------------------------------------------------------------ item 3: deferred hangups
def test_a_hangup_decided_while_the_link_is_down_is_carried_out_after_the_reconnect(
        h: Harness, fs: FakeFreeSWITCH, proxy: CuttableProxy) -> None:
    d = h.start("max_call_duration = 2s", nodes=proxied_node(proxy, fs))
    up = fs.create_call("acme", account_on="create")
    ends = fs.create_call("acme", account_on="create")
    fs.answer(up)
    fs.answer(ends)
    assert wait_for(lambda: d.guard.tracker.timers_armed() == 2)
    proxy.cut()
    fs.hangup(ends)  # ends while the link is down: nobody hears it
    # both deadlines pass while the link is down: decided, not carried out
    assert wait_for(lambda: d.guard.tracker.active("acme") == 0, timeout=10)
    assert not d.guard.links["default"].connected
    assert hangup_rows(h) == [], "a hangup that was never sent is in the audit trail"
    proxy.restore()
    assert wait_for(lambda: h.killed(up), timeout=40), "the call runs forever"
    assert not h.killed(ends)
    assert wait_for(lambda: hangup_rows(h) == [up], timeout=10), hangup_rows(h)
    assert up not in fs.calls()


def held(h: Harness) -> int:
    """Hangups waiting for the reconnect of node `default`."""
    assert h.daemon is not None
    return len(h.daemon.guard.tracker.deferred.get("default", {}))


def reconnected(h: Harness, proxy: CuttableProxy) -> None:
    """Restore the link and wait for the resync that carries out (or drops) held hangups."""
    before = resyncs(h)
    proxy.restore()
    assert wait_for(lambda: resyncs(h) > before, timeout=40), "no resync after the reconnect"


def test_a_held_hangup_of_a_lock_that_ended_meanwhile_is_not_carried_out(
        h: Harness, fs: FakeFreeSWITCH, proxy: CuttableProxy) -> None:
    """policy.still_due: an operator locks the account while the link is down (the hangup of
    its call is held), then unlocks it; after the reconnect the call goes on, counted, and
    the audit trail has no hangup."""
    d = h.start("max_concurrent_calls = 5", nodes=proxied_node(proxy, fs))
    up = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    proxy.cut()
    assert wait_for(lambda: not d.guard.links["default"].connected)
    assert cli(["lock", "acme", "-c", str(h.conf), "--for", "1h"]) == 0
    assert wait_for(lambda: held(h) == 1, timeout=10), "the lock's hangup was not held"
    assert cli(["unlock", "acme", "-c", str(h.conf)]) == 0
    assert wait_for(lambda: not d.guard.tracker.is_locked("acme"), timeout=10)
    reconnected(h, proxy)
    assert held(h) == 0
    assert fs.kills == [] and up in fs.calls(), "a false hangup: the account is no longer locked"
    assert hangup_rows(h) == []
    assert d.guard.tracker.active("acme") == 1


def test_a_held_duration_hangup_is_dropped_when_a_reload_raised_the_limit(
        h: Harness, fs: FakeFreeSWITCH, proxy: CuttableProxy,
        caplog: pytest.LogCaptureFixture) -> None:
    """policy.still_due: the call passes max_call_duration while the link is down (the hangup
    is held), then a reload raises the limit; after the reconnect the call goes on, timed by
    the new limit."""
    caplog.set_level(logging.INFO)
    d = h.start("max_call_duration = 2s", nodes=proxied_node(proxy, fs))
    up = fs.create_call("acme", account_on="create")
    fs.answer(up)
    assert wait_for(lambda: d.guard.tracker.timers_armed() == 1)
    proxy.cut()
    assert wait_for(lambda: held(h) == 1, timeout=10), "the duration hangup was not held"
    reload(h, d, caplog, "max_call_duration = 2s", "max_call_duration = 1h")
    reconnected(h, proxy)
    assert fs.kills == [] and up in fs.calls(), "a false hangup: the call is within 1h"
    assert hangup_rows(h) == []
    assert d.guard.tracker.active("acme") == 1 and d.guard.tracker.timers_armed() == 1


def test_held_hangups_of_locks_and_durations_are_carried_out_after_a_daemon_restart(
        h: Harness, fs: FakeFreeSWITCH, proxy: CuttableProxy) -> None:
    """Held hangups live in memory only, yet a restart loses none of these: the new daemon
    adopts the calls at its first resync, times them from their real answer (uuid_dump) and
    refuses those of accounts locked in the database (README, "Hangups decided while a node's
    link is down")."""
    d = h.start("max_call_duration = 2s", nodes=proxied_node(proxy, fs),
                extra="[account:bob]\nmax_call_duration = 1h\n")
    long = fs.create_call("acme", account_on="create")
    fs.answer(long)
    locked = fs.create_call("bob", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("bob") == 1 and
                    d.guard.tracker.timers_armed() == 1)
    proxy.cut()
    assert cli(["lock", "bob", "-c", str(h.conf), "--for", "1h"]) == 0
    assert wait_for(lambda: held(h) == 2, timeout=10), "both hangups are held"
    assert hangup_rows(h) == []
    assert h.stop() == 0
    assert fs.kills == []
    proxy.restore()
    d = h.start()
    assert wait_for(lambda: h.killed(long) and h.killed(locked), timeout=10), fs.kills
    assert wait_for(lambda: hangup_rows(h) == sorted([long, locked]), timeout=10)


def test_a_call_that_ended_while_the_link_was_down_stops_counting_at_the_reconnect(
        h: Harness, fs: FakeFreeSWITCH, proxy: CuttableProxy) -> None:
    """The call began just before the link dropped and ended while it was down; the first list
    after the reconnect omits it, within UNLISTED_GRACE of its start.  The switch's sessions
    (uuid_exists) say it is gone: it no longer counts, and the next call is admitted."""
    d = h.start("max_concurrent_calls = 1", nodes=proxied_node(proxy, fs))
    a = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    proxy.cut()
    assert wait_for(lambda: not d.guard.links["default"].connected)
    fs.hangup(a)
    reconnected(h, proxy)
    assert d.guard.tracker.active("acme") == 0, "an ended call counts on"
    assert any(c.startswith("api uuid_exists ") for c in fs.commands), "the grace applied"
    b = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    assert fs.kills == [] and b in fs.calls()


# ------------------------------------------------------------------ item 10: lagging lists
def test_a_lagging_channel_list_never_brings_back_a_call_seen_to_end(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1", nodes=node_section(fs, resync_interval="1s"))
    a = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    fs.lag_db()  # the database still lists `a` after its end
    fs.hangup(a)
    assert wait_for(lambda: d.guard.tracker.active("acme") == 0)
    done = resyncs(h)
    assert wait_for(lambda: resyncs(h) >= done + 2, timeout=10)  # asked for after the end
    assert a not in d.guard.tracker.nodes["default"]
    assert d.guard.tracker.active("acme") == 0, "a lagging answer brought back an ended call"
    b = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: b in d.guard.tracker.nodes["default"])
    assert not d.guard.tracker.nodes["default"][b].doomed and d.guard.tracker.active("acme") == 1


def test_a_lagging_channel_list_does_not_drop_a_call_seen_starting(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1", nodes=node_section(fs, resync_interval="1s"))
    fs.create_call("bob", account_on="create")  # (an empty list is not believed)
    assert wait_for(lambda: d.guard.tracker.active("bob") == 1)
    fs.lag_db()  # the database does not list the new call yet
    a = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    done = resyncs(h)
    assert wait_for(lambda: resyncs(h) >= done + 1, timeout=10)  # asked for after the start
    assert d.guard.tracker.active("acme") == 1, "a lagging answer dropped a live call"
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over)), "the dropped call no longer counted"
    fs.catch_up_db()
    assert a in fs.calls() and not h.killed(a)


# ------------------------------------------------------------------ item 11: late events
def test_an_event_after_the_end_does_not_bring_the_call_back(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1")
    a = fs.create_call("acme", account_on="create")
    fs.answer(a)
    ch = fs.channel(a)
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    fs.hangup(a)
    # Late, after CHANNEL_DESTROY, carrying the account.  (The simulator has real bytes of
    # CHANNEL_ANSWER but not of CHANNEL_PROGRESS_MEDIA; the tracker treats every non-end event
    # alike: tests/test_tracker.py has the PROGRESS_MEDIA case.)
    fs.emit("CHANNEL_ANSWER", ch)
    b = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: b in d.guard.tracker.nodes["default"])
    assert a not in d.guard.tracker.nodes["default"], "a late event revived the call"
    assert d.guard.tracker.active("acme") == 1
    assert not d.guard.tracker.nodes["default"][b].doomed


# ------------------------------------------------------------------ item 17: idle accounts
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_accounts_without_live_calls_are_forgotten_within_minutes(
        tmp_path: Path, fs: FakeFreeSWITCH) -> None:
    conf = tmp_path / "guard.conf"
    conf.write_text(node_section(fs, resync_interval="1h")
                    + f"[database]\nurl = sqlite:///{tmp_path / 'g.db'}\n"
                    + "[policy]\nmax_call_rate = 5/1m\n")
    conf.chmod(0o600)
    clock = Clock(1000.0)
    guard = Guard(load_config(conf), clock=clock)
    guard.start()
    try:
        assert wait_for(lambda: guard.sync["default"].ok, timeout=10)
        calls = [fs.create_call(f"caller-{i}", account_on="create") for i in range(50)]
        keep = fs.create_call("busy", account_on="create")
        assert wait_for(lambda: len(guard.tracker.accounts) == 51)
        for u in calls:
            fs.hangup(u)
        assert wait_for(lambda: guard.tracker.live_calls() == 1)
        clock.now += ACCOUNT_IDLE + 1  # the tick loop runs on this clock
        assert wait_for(lambda: set(guard.tracker.accounts) == {"busy"}), \
            f"{len(guard.tracker.accounts)} accounts kept"
        assert keep in fs.calls() and fs.kills == []
    finally:
        guard.stop()


# ------------------------------------------------------------------ item 8: answer time
def test_a_call_found_by_a_resync_is_timed_from_its_answer(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    rang = fs.create_call("acme", account_on="create")  # up before the daemon starts
    fs.answer(rang)
    ch = fs.channel(rang)
    ch.created_us -= 30_000_000  # it rang 30 s before it was answered
    free = fs.create_call("bob", account_on="create")  # no duration limit: no uuid_dump
    fs.answer(free)
    other = fs.create_call("acme", account_on="create")  # not answered: no uuid_dump
    d = h.start("max_concurrent_calls = 10",
                extra="[account:acme]\nmax_call_duration = 20s\n")
    call = d.guard.tracker.nodes["default"][rang]
    assert call.answered is not None and not h.killed(rang), \
        "timed from its creation: hung up at once, 10 s early"
    since_answer = d.guard.wall() - ch.answered_us / 1e6
    assert abs((d.guard.clock() - call.answered) - since_answer) < 0.5
    dumps = [(peer, c) for peer, c in fs.command_log if c.startswith("api uuid_dump")]
    assert [c for _, c in dumps] == [f"api uuid_dump {rang}"]
    # asked on the reconciliation's connection, never on the event connection
    event_peer = next(p for p, c in fs.command_log if c.startswith("event plain"))
    assert dumps[0][0] != event_peer
    assert free in fs.calls() and other in fs.calls()
