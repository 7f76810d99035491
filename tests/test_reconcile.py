"""Slow, failed and huge reconciliations (issue 11, items 14 and 15), over real TCP.

The reconciliation's `show channels as json` goes over a connection of its own: a slow answer
never holds back a hangup, it has its own timeout, a failure is retried within seconds, a
20,000-channel answer (~17 MB) is read and applied, and a connection that fails right after
authenticating backs off.
"""
from __future__ import annotations

import gevent
import pytest

from esl_guard.config import load_config
from esl_guard.daemon import Daemon
from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness, node_section, wait_for


def resyncs(h: Harness, outcome: str) -> float:
    assert h.daemon is not None
    return float(h.daemon.metrics.resyncs.labels("default", outcome)._value.get())


def launch(h: Harness, policy: str, **kwargs: str) -> Daemon:
    """The daemon, started without waiting for its first resync."""
    h.write(policy, **kwargs)
    daemon = Daemon(str(h.conf), load_config(h.conf))
    h.daemon, h.runner = daemon, gevent.spawn(daemon.run)
    return daemon


def synced(h: Harness) -> bool:
    assert h.daemon is not None
    st = h.daemon.guard.sync.get("default")
    return st is not None and st.ok


def subscriptions(fs: FakeFreeSWITCH) -> int:
    """Event connections the daemon made (a reconciliation's connection never subscribes)."""
    return sum(1 for c in fs.commands if c.startswith("event plain"))


def test_a_slow_reconciliation_never_delays_a_hangup(h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1",
                nodes=node_section(fs, resync_interval="1s", command_timeout="1s"))
    hold = fs.hold_api("show channels")  # every answer from now on waits for release()
    assert wait_for(lambda: hold.waiting == 1, timeout=10), "no reconciliation started"
    loop = gevent.get_hub().loop
    held_at = loop.now()
    first = fs.create_call("acme", account_on="create")
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10), "the hangup waited for the resync"
    assert hold.answered == 0, "the reconciliation answered before the hangup"
    assert not h.killed(first)
    # the answer is slower than command_timeout: still a good reconciliation, not a failure
    assert wait_for(lambda: loop.now() - held_at > 2.5, timeout=5)
    ok = resyncs(h, "ok")
    hold.release()
    assert wait_for(lambda: resyncs(h, "ok") > ok, timeout=10)
    assert resyncs(h, "failed") == 0
    assert d.guard.tracker.active("acme") == 1
    assert d.guard.links["default"].reconnects == 0


def test_a_slow_first_resync_never_delays_a_hangup(h: Harness, fs: FakeFreeSWITCH) -> None:
    before = fs.create_call("acme", account_on="create")  # up before the daemon connects
    hold = fs.hold_api("show channels")
    d = launch(h, "max_concurrent_calls = 2", nodes=node_section(fs, command_timeout="1s"))
    assert wait_for(lambda: hold.waiting == 1, timeout=10)
    first = fs.create_call("acme", account_on="create")
    second = fs.create_call("acme", account_on="create")
    third = fs.create_call("acme", account_on="create")
    # not knowing `before` yet, the daemon counts 2 calls: the third one is over the limit
    assert wait_for(lambda: h.killed(third), timeout=10), "the hangup waited for the resync"
    assert hold.answered == 0, "the resync answered before the hangup"
    hold.release()
    assert wait_for(lambda: synced(h), timeout=10)
    assert d.guard.tracker.active("acme") == 3  # before, first, second: counted once each
    assert not any(h.killed(u) for u in (before, first, second))
    fourth = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(fourth), timeout=10)


def test_a_timed_out_reconciliation_is_retried_within_seconds_and_counts_the_calls(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    up = [fs.create_call("acme", account_on="create") for _ in range(2)]
    for uuid in up:
        fs.answer(uuid)
    hold = fs.hold_api("show channels", count=1)  # the first answer never comes
    d = h.start("max_concurrent_calls = 2",
                nodes=node_section(fs, resync_timeout="1s", command_timeout="1s"))
    # h.start waited (10 s at most) for a successful resync: the retry, while the first is held
    assert hold.seen == 2 and hold.answered == 0
    assert resyncs(h, "failed") == 1
    assert d.guard.tracker.active("acme") == 2
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10)
    assert not any(h.killed(u) for u in up)
    assert d.guard.links["default"].reconnects == 0
    hold.release()


def test_a_failed_reconciliation_is_retried_within_seconds(h: Harness, fs: FakeFreeSWITCH) -> None:
    up = fs.create_call("acme", account_on="create")
    fs.fail_api.add("show")
    daemon = launch(h, "max_concurrent_calls = 1")
    assert wait_for(lambda: resyncs(h, "failed") >= 1, timeout=10)
    fs.fail_api.clear()
    assert wait_for(lambda: resyncs(h, "ok") >= 1, timeout=10)
    assert daemon.guard.tracker.active("acme") == 1
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10)
    assert not h.killed(up)


def test_an_empty_answer_while_the_switch_counts_sessions_changes_nothing(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    """FreeSWITCH answers `{"row_count": 0}` when its core database stayed locked (~30 s):
    believed, it would drop every call of the node."""
    up = [fs.create_call("acme", account_on="create") for _ in range(2)]
    d = h.start("max_concurrent_calls = 2", nodes=node_section(fs, resync_interval="1s"))
    assert d.guard.tracker.active("acme") == 2
    fs.db_busy = True
    assert wait_for(lambda: resyncs(h, "failed") >= 1, timeout=10)
    assert d.guard.tracker.active("acme") == 2
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10)
    assert not any(h.killed(u) for u in up)


def test_twenty_thousand_channels_are_read_and_applied(h: Harness, fs: FakeFreeSWITCH) -> None:
    accounts = 100
    for i in range(20_000):  # nobody is connected yet: no events, just channels
        fs.answer(fs.create_call(f"acct{i % accounts}", account_on="create"))
    daemon = launch(h, "max_concurrent_calls = 200",
            nodes=node_section(fs, resync_interval="1h", command_timeout="2s"))
    assert wait_for(lambda: synced(h), timeout=120), \
        "the 20,000-channel resync never succeeded"
    tracker = daemon.guard.tracker
    assert tracker.live_calls() == 20_000
    assert all(tracker.active(f"acct{i}") == 200 for i in range(accounts))
    assert daemon.guard.links["default"].reconnects == 0
    assert resyncs(h, "failed") == 0
    over = fs.create_call("acct7", account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10)
    assert len(fs.kills) == 1


def test_another_clients_huge_bgapi_result_does_not_reach_the_daemon(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    """FreeSWITCH sends a BACKGROUND_JOB to every listener subscribed to BACKGROUND_JOB."""
    from esl_guard.esl import GuardESL
    from esl_guard.frames import MAX_REPLY

    for _ in range(20_000):
        fs.answer(fs.create_call(None))
    d = h.start("max_concurrent_calls = 1")
    jobs: list[bytes] = []
    tool = GuardESL("127.0.0.1", fs.port, fs.password, on_event=lambda n, b: jobs.append(b),
                    on_close=lambda r: None, max_frame=MAX_REPLY)
    tool.connect()
    try:
        assert tool.send("event plain BACKGROUND_JOB").ok
        assert tool.send("bgapi show channels as json").ok
        assert wait_for(lambda: jobs, timeout=60)
        assert len(jobs[0]) > 16 << 20  # over the event cap of the daemon's connection
    finally:
        tool.close("done")
    still = fs.create_call("acme", account_on="create")
    over = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10)
    assert not h.killed(still)
    assert d.guard.links["default"].reconnects == 0


def test_a_connection_failing_right_after_authenticating_backs_off(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    fs.drop_after_subscribe = True
    daemon = launch(h, "max_concurrent_calls = 1")
    assert wait_for(lambda: subscriptions(fs) >= 1, timeout=10)
    # The observation window (not a synchronisation): the waits before the 2nd, 3rd, 4th
    # and 5th connection are at least 0.25, 0.5, 1 and 2 s, so 3 s hold at most 4 connections;
    # without a backoff there are hundreds.
    gevent.sleep(3.0)
    made = subscriptions(fs)
    assert 2 <= made <= 4, f"{made} event connections in 3 s"
    link = daemon.guard.links["default"]
    assert link.last_error is not None and "connection lost after" in link.last_error
    fs.drop_after_subscribe = False
    assert wait_for(lambda: synced(h), timeout=15)
    over = [fs.create_call("acme", account_on="create") for _ in range(2)][1]
    assert wait_for(lambda: h.killed(over), timeout=10)


@pytest.mark.parametrize("events_before", [0, 3])
def test_simulated_api_holds_back_the_connections_events(
        fs: FakeFreeSWITCH, events_before: int) -> None:
    """As mod_event_socket: while an `api` runs inline, its connection gets no events."""
    from esl_guard.esl import GuardESL

    got: list[str] = []
    conn = GuardESL("127.0.0.1", fs.port, fs.password, on_event=lambda n, b: got.append(n),
                    on_close=lambda r: None)
    conn.connect()
    try:
        assert conn.send("event plain CHANNEL_CREATE").ok
        for _ in range(events_before):
            fs.create_call("acme")
        assert wait_for(lambda: len(got) == events_before)
        hold = fs.hold_api("show channels")
        pending = conn.send_nowait("api show channels as json")
        assert wait_for(lambda: hold.waiting == 1)
        fs.create_call("acme")
        other = fs.create_call("acme")
        fs.hangup(other)
        assert not wait_for(lambda: len(got) > events_before, timeout=0.3)
        hold.release()
        assert pending.get(timeout=5).body.startswith("{")
        assert wait_for(lambda: len(got) == events_before + 2)
    finally:
        conn.close("test done")
