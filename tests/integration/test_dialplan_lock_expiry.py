"""The shipped dialplan check (conf/dialplan-locked-accounts.xml) on a real FreeSWITCH: it
compares a lock's expiry with the switch's clock, so an expired entry never refuses a call,
even while esl-guard is down and cannot delete it (issue 11, item 4).  No esl-guard here: the
entries are written straight into mod_hash, as a stopped esl-guard leaves them."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)


@pytest.fixture
def entries(fs_target: Target, run_id: str) -> Iterator[dict[str, str]]:
    """Accounts of this run and their mod_hash values (None: no entry), removed afterwards."""
    now = int(time.time())
    values = {f"expired-{run_id}": str(now - 60), f"live-{run_id}": str(now + 600),
              f"forever-{run_id}": "forever", f"old-format-expired-{run_id}": f"until_{now - 60}"}
    for account, value in values.items():
        assert eslsock.api(fs_target, f"hash insert/esl_guard/{account}/{value}").startswith("+OK")
    yield values
    for account in values:
        eslsock.api(fs_target, f"hash delete/esl_guard/{account}")


def test_an_expired_entry_lets_the_call_through_a_live_one_refuses_it(
        fs_target: Target, place_calls: PlaceCalls, entries: dict[str, str],
        run_id: str) -> None:
    expected = {f"expired-{run_id}": ("caller_bye", "200"),
                f"old-format-expired-{run_id}": ("caller_bye", "200"),
                f"none-{run_id}": ("caller_bye", "200"),
                f"live-{run_id}": ("rejected", "403"),
                f"forever-{run_id}": ("rejected", "403")}
    seen = {}
    for account, outcome in expected.items():
        scenario = "uac_locked.xml" if outcome[0] == "rejected" else "uac_hold.xml"
        res = place_calls(account.split("-")[0], account, scenario=scenario, calls=1,
                          hold_ms=1000).run()
        assert res.returncode == 0, res.describe()
        seen[account] = [(o.outcome, o.code) for o in res.outcomes]
    assert seen == {account: [outcome] for account, outcome in expected.items()}
