"""`esl-guard status` against a real FreeSWITCH (issue 16, live status): a call placed with
sipp is in `status ACCOUNT` and `status` while it is up, asked of the daemon over its control
socket, not read from a stored report.

Without ESL_GUARD_FS / ESL_GUARD_FS_BIN (or without sipp) the module is skipped with one line.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.eslsock import poll
from tests.integration.guard import GuardProcess
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)


@pytest.fixture(scope="module")
def account(run_id: str) -> str:
    return f"live-{run_id}"


@pytest.fixture(scope="module")
def guard(fs_target: Target, account: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path_factory.mktemp("guard-live"), fs_target,
                     {account: {"max_concurrent_calls": "3", "max_call_rate": "10/1m"}},
                     resync_interval="60s")
    g.start()
    yield g
    g.stop()


def status(guard: GuardProcess, *args: str) -> dict[str, Any]:
    return dict(json.loads(guard.cli("status", *args, "--json").stdout))


def test_status_shows_a_real_call_while_it_is_up(guard: GuardProcess, account: str,
                                                 place_calls: PlaceCalls) -> None:
    assert status(guard, account)["live"]["live_calls"] == 0
    call = place_calls("live", account, calls=1, hold_ms=8_000).start()
    try:
        def up() -> dict[str, Any] | None:
            doc = status(guard, account)
            return doc if doc["live"]["live_calls"] == 1 else None

        doc = poll(up, timeout=10, what="status shows the call")
        assert doc["source"] == "live" and list(doc["live"]["by_node"].values()) == [1]
        windows = {w["rule"]: w for w in doc["live"]["windows"]}
        assert windows["max_concurrent_calls"]["observed"] == 1
        assert windows["max_call_rate"]["observed"] == 1
        whole = status(guard)
        assert whole["source"] == "live" and whole["snapshot"]["active_calls"] >= 1
        assert {"account": account, "active": 1, "limit": 3} in whole["snapshot"]["busiest"]
        res = call.wait()  # the caller hangs up after its hold
        assert res.counts()["caller_bye"] == 1, res.describe()
    finally:
        call.stop()
    assert poll(lambda: status(guard, account)["live"]["live_calls"] == 0 or None, timeout=10,
                what="status shows the call ended")
