"""A call already up when esl-guard starts is timed from its real answer (issue 11, item 8),
against a real FreeSWITCH with a sipp call.

Extension 9006 rings 3 s before it answers.  `show channels` gives only the creation time;
esl-guard asks `uuid_dump` for the answer time.  The daemon starts once the call is answered:
timed from its creation it would be hung up 3 s early (LIMIT after its creation), timed from
its answer it is hung up LIMIT after the answer FreeSWITCH reports (or at once, should the
daemon take longer than LIMIT to start on a loaded machine).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

LIMIT = 12.0  # max_call_duration; 9006 rings 3 s first


def dumped_times(target: Target, account: str) -> tuple[str, float, float] | None:
    """(uuid, created, answered) in epoch seconds, from FreeSWITCH's own uuid_dump, once the
    account's call is answered."""
    doc = json.loads(eslsock.api(target, "show channels as json") or "{}")
    for row in doc.get("rows", []):
        if row.get("accountcode") == account and row.get("callstate") == "ACTIVE":
            fields = dict(line.split(": ", 1) for line in
                          eslsock.api(target, f"uuid_dump {row['uuid']}").splitlines()
                          if ": " in line)
            return (row["uuid"], int(fields["Caller-Channel-Created-Time"]) / 1e6,
                    int(fields["Caller-Channel-Answered-Time"]) / 1e6)
    return None


def test_a_call_found_by_the_first_resync_is_timed_from_its_answer(
        fs_target: Target, run_id: str, place_calls: PlaceCalls, tmp_path: Path) -> None:
    account = f"ring-{run_id}"
    sipp = place_calls("ring", account, dest="9006", hold_ms=30000).start()
    uuid, created, answered = eslsock.poll(lambda: dumped_times(fs_target, account), 20,
                                           what="the call to 9006 answered")
    assert answered - created >= 2.5, (created, answered)
    guard = GuardProcess(tmp_path / "guard", fs_target,
                         {account: {"max_call_duration": f"{LIMIT:g}s"}})
    guard.start()
    started = time.time()  # connected, initial resync done
    try:
        rows = guard.wait_audit(account, lambda r: len(kinds(r, "hangup")) >= 1, timeout=30)
        [hangup] = kinds(rows, "hangup", "max_call_duration")
        assert hangup["uuid"] == uuid
        up = hangup["epoch"] - answered
        assert up >= LIMIT - 0.3, f"hung up {up:.1f}s after the answer: timed from creation"
        assert up < max(LIMIT, started - answered) + 3, \
            f"hung up {up:.1f}s after the answer\n{guard.tail(60)}"
        res = sipp.wait()
        assert [o.outcome for o in res.outcomes] == ["remote_bye"], res.describe()
    finally:
        guard.stop()
