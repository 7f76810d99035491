"""Issue 11, item 16, on the real FreeSWITCH: an attended transfer keeps its account.

A (a sipp caller of the account) calls 9005, which bridges it to B1 (a sipp UAS on 5090).  The
test then completes an attended transfer over ESL as a PBX application does: it originates B2
(`originate {origination_uuid=B2}sofia/external/9999@IP:5090 &park()`, the same UAS) and
bridges B1 to B2 (`uuid_bridge B1 B2`); A, left without its peer and with nothing after
`bridge` in its dialplan, is hung up by FreeSWITCH.  B1 (a B-leg of A) and B2 never carry the
account.  With max_concurrent_calls = 1 a new call of the account is refused while the
transferred call is up, and max_call_duration still hangs it up: the UAS gets FreeSWITCH's BYE
on both dialogs.  Before the fix the new call was let through and the transferred call ran
on until the UAS gave up.

(`att_xfer`, where A itself originates B2, is recorded in tests/fixtures/esl/plain_att_xfer.bin
and replayed by tests/test_transfer.py.  Driven here with `uuid_broadcast A att_xfer::...`, it
failed in about 1 run in 3 on this FreeSWITCH whatever the test waited for first (the bridge
in `show calls`, A's `signal_bond`, B1 in CS_EXCHANGE_MEDIA): att_xfer then never bridged B1 to
B2, and A's session stayed until its legs ended.)
"""
from __future__ import annotations

import json
import uuid as uuidlib
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
HOLD_MS = 15000   # A's hold after its answer (FreeSWITCH ends A first, once B1 is taken away)
DURATION = 18     # max_call_duration (s), counted from A's answer (B2 rings 3 s after it)


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
    """The uuid of the leg A is bridged to, once FreeSWITCH lists the bridge (`show calls`)."""
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


def transferred(target: Target, a_leg: str, legs: set[str]) -> bool:
    """B1 and B2 are the only channels of the call (A no longer listed)."""
    return far_legs(target) == legs and a_leg not in {r.get("uuid") for r in channel_rows(target)}


def test_a_transferred_call_still_counts_and_is_timed(guard: GuardProcess, fs_target: Target,
                                                     account: str, place_calls: PlaceCalls,
                                                     sipp_dir: Path) -> None:
    uas = Sipp.uas("uas", "uas_ring.xml", local_ip=fs_target.sipp_ip, workdir=sipp_dir,
                   calls=2, port=UAS_PORT, timeout=DURATION + 40).start()
    place_calls.started.append(uas)
    uas.wait_listening()
    caller = place_calls("transferor", account, dest="9005", hold_ms=HOLD_MS).start()
    b2 = str(uuidlib.uuid4())
    try:
        a_leg = eslsock.poll(lambda: next((str(r["uuid"]) for r in channel_rows(fs_target)
                                           if r.get("accountcode") == account), None), 10,
                             what="the caller's channel")
        b1 = eslsock.poll(lambda: bridged_leg_of(fs_target, a_leg), 10, what="A bridged to B1")
        with eslsock.connect(fs_target, timeout=20) as esl:  # answers once B2 answers (3 s)
            reply = esl.api(f"originate {{origination_uuid={b2}}}sofia/external/9999@"
                            f"{fs_target.sipp_ip}:{UAS_PORT} &park()")
        assert reply.startswith("+OK"), reply
        reply = eslsock.api(fs_target, f"uuid_bridge {b1} {b2}")
        assert reply.startswith("+OK"), reply
        res = caller.wait()
        assert res.returncode == 0 and len(res.outcomes) == 1, res.describe()
        eslsock.poll(lambda: transferred(fs_target, a_leg, {b1, b2}), 10,
                     what="B1 and B2 up, A gone (the core db lags behind events)")

        # limit 1: the transferred call still holds the account's slot
        second = place_calls("second", account, dest="9001", hold_ms=3000).run()
        assert second.returncode == 0 and len(second.outcomes) == 1, second.describe()
        assert len(second.ended_by_freeswitch()) == 1, second.describe()
        assert_ended_by_guard(second.ended_by_freeswitch(), second)
        assert far_legs(fs_target) == {b1, b2}, "the transferred call was touched"

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
    assert len(concurrency) == 1 and concurrency[0]["uuid"] not in {a_leg, b1, b2}, rows
    assert [r["uuid"] for r in duration] == [b1], rows
    assert len(kinds(rows, "violation", "max_concurrent_calls")) == 1, rows
    assert len(kinds(rows, "violation", "max_call_duration")) == 1, rows
    assert len(kinds(rows, "hangup")) == 2, rows


def test_daemon_still_running(guard: GuardProcess) -> None:
    assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
    assert "Traceback" not in guard.log.read_text(errors="replace"), guard.tail(80)
