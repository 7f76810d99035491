"""Issue 11, item 16, on the real FreeSWITCH: an attended transfer keeps its account.

A (a sipp caller of the account) calls 9005, which bridges it to B1 (a sipp UAS on 5090); the
test then does what a PBX's `bind_meta_app ... att_xfer` does when the caller presses the
transfer key: `uuid_broadcast A att_xfer::sofia/external/9999@IP:5090 aleg`.  FreeSWITCH holds
B1, originates B2 from A (the same UAS), and when A's caller hangs up it bridges B1 to B2
(tests/fixtures/esl/plain_att_xfer.bin).  Both remaining legs are B-legs of A that never carry
the account.  With max_concurrent_calls = 1 a new call of the account is refused while the
transferred call is up, and max_call_duration still hangs the transferred call up: the UAS
gets FreeSWITCH's BYE on both dialogs.  Before the fix the new call was let through and the
transferred call ran forever.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.sipprun import Sipp
from tests.integration.target import Target
from tests.integration.test_freeswitch import assert_ended_by_guard

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

UAS_PORT = 5090   # extension 9005 bridges to sofia/external/9999@${sip_network_ip}:5090
HOLD_MS = 9000    # A's hold after its answer; B2 answers about 3.5 s after the transfer starts
DURATION = 24     # max_call_duration (s), counted from A's answer; A hangs up at about 9 s


@pytest.fixture(scope="module")
def account(run_id: str) -> str:
    return f"xfer-{run_id}"


@pytest.fixture(scope="module")
def guard(fs_target: Target, account: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path_factory.mktemp("guard-transfer"), fs_target, {
        account: {"max_concurrent_calls": "1", "max_call_duration": f"{DURATION}s"},
    })
    g.start()
    yield g
    g.stop()


def channel_rows(target: Target) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        eslsock.api(target, "show channels as json") or "{}").get("rows", [])
    return rows


def bridged_leg_of(target: Target, a_leg: str) -> str | None:
    """The uuid of the leg A is bridged to, once FreeSWITCH lists the bridge (`show calls`
    has a row per bridged call, written on CHANNEL_BRIDGE; att_xfer broadcast to A before
    that runs in the middle of the bridge's setup and the transfer never completes)."""
    doc = json.loads(eslsock.api(target, "show calls as json") or "{}")
    for row in doc.get("rows", []):
        if row.get("uuid") == a_leg and row.get("b_uuid") and row.get("b_callstate") == "ACTIVE":
            return str(row["b_uuid"])
    return None


def far_legs(target: Target) -> set[str]:
    """The live outbound legs to the UAS (B1 and B2 once A is gone)."""
    return {str(r["uuid"]) for r in channel_rows(target)
            if r.get("direction") == "outbound"
            and str(r.get("name", "")).startswith("sofia/external/9999@")}


def transferred(target: Target, a_leg: str, b1: str) -> set[str] | None:
    """B1 and B2, once they are the only channels of the call (A no longer listed)."""
    rows = channel_rows(target)
    legs = far_legs(target)
    if len(legs) == 2 and b1 in legs and a_leg not in {r.get("uuid") for r in rows}:
        return legs
    return None


def test_a_transferred_call_still_counts_and_is_timed(guard: GuardProcess, fs_target: Target,
                                                     account: str, place_calls: PlaceCalls,
                                                     sipp_dir: Path) -> None:
    uas = Sipp.uas("uas", "uas_ring.xml", local_ip=fs_target.sipp_ip, workdir=sipp_dir,
                   calls=2, port=UAS_PORT, timeout=DURATION + 40).start()
    place_calls.started.append(uas)
    uas.wait_listening()
    caller = place_calls("transferor", account, dest="9005", hold_ms=HOLD_MS).start()
    try:
        a_leg = eslsock.poll(lambda: next((str(r["uuid"]) for r in channel_rows(fs_target)
                                           if r.get("accountcode") == account), None), 10,
                             what="the caller's channel")
        b1 = eslsock.poll(lambda: bridged_leg_of(fs_target, a_leg), 10, interval=0.1,
                          what="A bridged to B1")
        reply = eslsock.api(fs_target, f"uuid_broadcast {a_leg} att_xfer::sofia/external/9999@"
                                       f"{fs_target.sipp_ip}:{UAS_PORT} aleg")
        assert reply.startswith("+OK"), reply
        res = caller.wait()  # A's caller hangs up after its hold: att_xfer bridges B1 to B2
        assert res.returncode == 0 and res.counts() == {"caller_bye": 1}, res.describe()
        legs = eslsock.poll(lambda: transferred(fs_target, a_leg, b1), 10,
                            what="B1 and B2 up, A gone (the core db lags behind events)")

        # limit 1: the transferred call still holds the account's slot
        second = place_calls("second", account, dest="9001", hold_ms=3000).run()
        assert second.returncode == 0 and len(second.outcomes) == 1, second.describe()
        assert len(second.ended_by_freeswitch()) == 1, second.describe()
        assert_ended_by_guard(second.ended_by_freeswitch(), second)
        assert far_legs(fs_target) == legs, "the transferred call was touched"

        # max_call_duration: the transferred call is hung up; the far end gets both BYEs
        far = uas.wait()
        assert far.counts() == {"answered": 2}, far.describe()
        eslsock.poll(lambda: not far_legs(fs_target), 10, what="no leg of the call left")
    finally:
        for leg in far_legs(fs_target):
            eslsock.api(fs_target, f"uuid_kill {leg}")
    rows = guard.wait_audit(account, lambda r: len(kinds(r, "hangup")) >= 2)
    concurrency = kinds(rows, "hangup", "max_concurrent_calls")
    duration = kinds(rows, "hangup", "max_call_duration")
    assert len(concurrency) == 1 and concurrency[0]["uuid"] not in legs | {a_leg}, rows
    assert [r["uuid"] for r in duration] == [b1], rows
    assert len(kinds(rows, "violation", "max_concurrent_calls")) == 1, rows
    assert len(kinds(rows, "violation", "max_call_duration")) == 1, rows
    assert len(kinds(rows, "hangup")) == 2, rows


def test_daemon_still_running(guard: GuardProcess) -> None:
    assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
    assert "Traceback" not in guard.log.read_text(errors="replace"), guard.tail(80)
