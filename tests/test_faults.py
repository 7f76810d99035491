"""Hostile input and faults: nothing gets in, nothing breaks, nothing is lost."""
from __future__ import annotations

import errno
import json
import uuid as uuidlib
from pathlib import Path

import gevent
import pytest
from sqlalchemy.engine import make_url

from esl_guard.simulator import FakeFreeSWITCH, render_event
from esl_guard.store import Journal
from tests.harness import Harness, cli, wait_for
from tests.tcp_proxy import CuttableProxy


def recovered(h: Harness, before: int) -> bool:
    d = h.daemon
    assert d is not None
    link = d.guard.links["default"]
    return link.reconnects > before and link.connected and d.guard.sync["default"].ok


def still_enforcing(h: Harness, fs: FakeFreeSWITCH, account: str = "acme", limit: int = 1) -> None:
    """With max_concurrent_calls = limit: the call over it, of a fresh account, is killed."""
    for _ in range(limit):
        fs.create_call(account, account_on="create")
    over = fs.create_call(account, account_on="create")
    assert wait_for(lambda: h.killed(over), timeout=10), "not enforcing any more"


def test_connection_cut_mid_frame(h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1")
    frame = render_event("CHANNEL_CREATE", str(uuidlib.uuid4()), account="acme", seq=10)
    fs.send_raw(frame[: len(frame) // 2])
    assert wait_for(lambda: d.guard.links["default"].conn._reader.buffered > 0)
    fs.drop_connections()
    assert wait_for(lambda: recovered(h, 0), timeout=15)
    still_enforcing(h, fs)


@pytest.mark.parametrize("garbage", [
    b"Content-Length: 999999999\nContent-Type: text/event-plain\n\n",   # over the size cap
    b"Content-Length: abc\n\n",                                          # not a number
    b"\x00\xff\xfe garbage \x00 without any header separator\n\n",      # not a header block
])
def test_garbage_resets_and_resyncs(h: Harness, fs: FakeFreeSWITCH, garbage: bytes) -> None:
    h.start("max_concurrent_calls = 1")
    fs.send_raw(garbage)
    assert wait_for(lambda: recovered(h, 0), timeout=15)
    still_enforcing(h, fs)


def test_skippable_frames_are_skipped_without_a_reset(h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 1")
    body = b"Event-Name: CHANNEL_CREATE\nvariable_accountcode: acme\n\n"  # no Unique-ID
    fs.send_raw(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body))
    body = b"Unique-ID: 6e3cfff3-8692-405e-af1c-91f7ec67ef18\n\n"         # no Event-Name
    fs.send_raw(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body))
    fs.send_raw(b"Content-Type: text/unknown-thing\nContent-Length: 4\n\n\xff\xfe\xfd\xfc")
    body = (b"Event-Name: CHANNEL_CREATE\nUnique-ID: not-a-uuid\n"
            b"variable_accountcode: acme\n\n")
    fs.send_raw(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body))
    still_enforcing(h, fs)
    assert d.guard.links["default"].reconnects == 0
    assert d.metrics.bad_input.labels("no_unique_id")._value.get() == 1
    assert d.metrics.bad_input.labels("bad_uuid")._value.get() == 1


def test_non_utf8_account_is_enforced_but_never_written_into_a_command(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    h.start("max_concurrent_calls = 1\nlock_after = 1/1m")
    uuids = [str(uuidlib.uuid4()) for _ in range(2)]
    for u in uuids:
        body = (b"Event-Name: CHANNEL_CREATE\nUnique-ID: " + u.encode() +
                b"\nCall-Direction: inbound\nvariable_accountcode: bad\xff\xfe%0Aapi%20x\n\n")
        fs.send_raw(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body))
    assert wait_for(lambda: any(c == f"api uuid_kill {uuids[1]} CALL_REJECTED" for c in fs.commands))
    assert not any(c.startswith("api hash ") for c in fs.commands)  # hash_dump only lists
    assert all("\n" not in c and "api x" not in c for c in fs.commands)


def test_freeswitch_restart_under_load(h: Harness, fs: FakeFreeSWITCH) -> None:
    d = h.start("max_concurrent_calls = 3")
    assert cli(["lock", "mallory", "-c", str(h.conf)]) == 0
    assert wait_for(lambda: "mallory" in fs.hash.get("esl_guard", {}))
    stop = False

    def traffic() -> None:
        n = 0
        while not stop:
            u = fs.create_call(f"load{n % 20}", account_on="create")
            fs.answer(u)
            if n % 2:
                fs.hangup(u)
            n += 1
            gevent.sleep(0.002)

    g = gevent.spawn(traffic)
    assert wait_for(lambda: d.guard.tracker.live_calls() > 20)
    fs.restart()
    assert wait_for(lambda: recovered(h, 0), timeout=15)
    stop = True
    g.join()
    assert wait_for(lambda: "mallory" in fs.hash.get("esl_guard", {}))
    # the counts agree with the switch again once reconciled
    d.guard.sync["default"].next_resync = 0
    assert wait_for(lambda: d.guard.tracker.live_calls() == len(
        [c for c in fs.calls().values() if c.get("leg") == "A" and c.get("account")]), timeout=10)
    still_enforcing(h, fs, "fresh", limit=3)


def _proxied(tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH) -> tuple[Harness, CuttableProxy]:
    real = make_url(pg_url)
    proxy = CuttableProxy((real.host or "127.0.0.1", real.port or 5432)).start()
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    return Harness(tmp_path, url, fs), proxy


def test_sigterm_with_a_full_queue_during_an_outage_loses_nothing(
        tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH, capsys: pytest.CaptureFixture[str]) -> None:
    h, proxy = _proxied(tmp_path, pg_url, fs)
    try:
        h.write("max_concurrent_calls = 0")
        h.conf.write_text(h.conf.read_text().replace("[database]\n", "[database]\nqueue_max = 4\n"))
        d = h.start()
        proxy.cut()
        victims = [fs.create_call("acme", account_on="create") for _ in range(12)]
        assert wait_for(lambda: all(h.killed(v) for v in victims))
        assert wait_for(lambda: not d.writer.db_ok, timeout=10)
        assert h.stop() == 0
        ops = Journal(str(tmp_path / "journal.jsonl")).read()
        assert {op["uuid"] for op in ops if op.get("kind") == "hangup"} == set(victims)
        proxy.restore()
        d2 = h.start()
        assert wait_for(lambda: d2.writer.db_ok and d2.writer.journal_bytes == 0, timeout=30)
        capsys.readouterr()
        assert cli(["audit", "-c", str(h.conf), "--json"]) == 0
        rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        hangups = [r["uuid"] for r in rows if r["kind"] == "hangup"]
        assert sorted(hangups) == sorted(victims)  # every one, exactly once
    finally:
        h.stop()
        proxy.stop()


def test_journal_disk_full_keeps_rows_in_memory_until_the_db_returns(
        tmp_path: Path, pg_url: str, fs: FakeFreeSWITCH, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def full(self: Journal, ops: list) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "append", full)
    h, proxy = _proxied(tmp_path, pg_url, fs)
    try:
        h.write("max_concurrent_calls = 0")
        h.conf.write_text(h.conf.read_text().replace("[database]\n", "[database]\nqueue_max = 2\n"))
        d = h.start()
        proxy.cut()
        victims = [fs.create_call("acme", account_on="create") for _ in range(8)]
        assert wait_for(lambda: all(h.killed(v) for v in victims)), "enforcement goes on"
        assert wait_for(lambda: not d.writer.db_ok, timeout=10)
        proxy.restore()
        assert wait_for(lambda: d.writer.db_ok and d.writer.queue_depth == 0, timeout=60)
        capsys.readouterr()
        assert cli(["audit", "-c", str(h.conf), "--json"]) == 0
        rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert sorted(r["uuid"] for r in rows if r["kind"] == "hangup") == sorted(victims)
    finally:
        h.stop()
        proxy.stop()


def test_freeswitch_killed_with_calls_up_and_back_at_once(h: Harness, fs: FakeFreeSWITCH) -> None:
    """FreeSWITCH SIGKILLed and started again within seconds: its calls end without one event.
    The reconnect sees a new Core-UUID, so the calls of the old instance stop counting at once,
    not after the channel list's grace: of two new calls (limit 1) exactly one is hung up."""
    d = h.start("max_concurrent_calls = 1")
    up = fs.create_call("acme", account_on="create")
    fs.answer(up)
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    before = d.guard.links["default"].reconnects
    fs.crash()
    assert wait_for(lambda: recovered(h, before), timeout=10)
    assert d.guard.tracker.active("acme") == 0
    first = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: d.guard.tracker.active("acme") == 1)
    second = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: h.killed(second))
    assert not h.killed(first) and not h.killed(up)


def test_a_peer_without_event_filters_is_still_enforced(h: Harness, fs: FakeFreeSWITCH) -> None:
    """An event-socket peer that refuses `filter`: esl-guard subscribes without filters (every
    CHANNEL_EXECUTE comes) instead of reconnecting forever, and enforces."""
    fs.refuse_commands.add("filter")
    d = h.start("max_concurrent_calls = 1")
    assert wait_for(lambda: d.guard.links["default"].connected and d.guard.sync["default"].ok)
    assert any(c.startswith("filter ") for c in fs.commands)
    still_enforcing(h, fs)
    assert d.guard.links["default"].reconnects == 0
