"""Detectors of issue 13 against a real FreeSWITCH with sipp: a caller ID outside
`caller_id_allowed` is refused, and a burst of short calls is stopped.

Skipped, like test_freeswitch.py, without ESL_GUARD_FS or sipp.
"""
from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

from tests.integration.test_freeswitch import (  # noqa: E402 - after the skip
    assert_ended_by_guard,
    assert_no_channels_left,
)


@pytest.fixture(scope="module")
def accounts(run_id: str) -> SimpleNamespace:
    return SimpleNamespace(short=f"short-{run_id}", calm=f"calm-{run_id}",
                           cidok=f"cidok-{run_id}",
                           spoof="acct1002")  # directory user 1002: caller ID 1002


@pytest.fixture(scope="module")
def guard(fs_target: Target, accounts: SimpleNamespace,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path_factory.mktemp("guard-detectors"), fs_target, {
        accounts.short: {"max_short_calls": "3/1m", "short_call": "6s"},
        accounts.spoof: {"caller_id_allowed": "+4420*"},
        accounts.calm: {"max_short_calls": "3/1m", "short_call": "1s"},
        accounts.cidok: {"caller_id_allowed": "cidok-*"},
    })
    g.start()
    yield g
    g.stop()


def test_a_caller_id_outside_caller_id_allowed_is_refused(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls) -> None:
    """User 1002 (accountcode on CHANNEL_CREATE) calls with caller ID 1002, which matches
    none of +4420*: refused with esl-guard's CALL_REJECTED before the answer (603).  The
    extension 9006 rings 1 s before it answers; 9001 answers at once, before any observer's
    uuid_kill can land (issue 12 pushes admission state into the dialplan for that)."""
    res = place_calls("spoof", "1002", scenario="uac_digest_hold.xml", digest=True, calls=2,
                      rate=10, limit=1, hold_ms=4000, dest="9006").run()
    assert res.returncode == 0 and len(res.outcomes) == 2, res.describe()
    ended = res.ended_by_freeswitch()
    assert len(ended) == 2, res.describe()
    assert_ended_by_guard(ended, res)
    assert [(o.outcome, o.code) for o in ended] == [("rejected", "603")] * 2, res.describe()
    rows = guard.wait_audit(accounts.spoof, lambda r: len(kinds(r, "hangup")) >= 2)
    assert {(r["rule"], r["clause"]) for r in kinds(rows, "hangup")} == {
        ("caller_id_allowed", "impersonation")}
    assert_no_channels_left(fs_target, accounts.spoof)
    # An account whose caller ID is allowed is untouched.
    ok = place_calls("cidok", accounts.cidok, calls=2, rate=10, limit=2, hold_ms=2000).run()
    assert ok.returncode == 0 and ok.counts()["caller_bye"] == 2, ok.describe()


def test_a_burst_of_short_calls_is_stopped(guard: GuardProcess, fs_target: Target,
                                           accounts: SimpleNamespace,
                                           place_calls: PlaceCalls) -> None:
    """4 calls of 0.3 s (short_call 6s, max 3/1m): the 4th one's end is the violation; the
    account's next calls are ended by FreeSWITCH on esl-guard's order."""
    acct = accounts.short
    burst = place_calls("short", acct, calls=4, rate=10, limit=1, hold_ms=300).run()
    assert burst.returncode == 0 and burst.counts()["caller_bye"] == 4, burst.describe()
    rows = guard.wait_audit(acct, lambda r: len(kinds(r, "violation", "max_short_calls")) >= 1)
    assert not kinds(rows, "hangup"), rows  # the short calls themselves ended on their own
    after = place_calls("short-after", acct, calls=2, rate=10, limit=1, hold_ms=4000).run()
    assert after.returncode == 0 and len(after.outcomes) == 2, after.describe()
    ended = after.ended_by_freeswitch()
    assert len(ended) == 2, after.describe()
    assert_ended_by_guard(ended, after)
    rows = guard.wait_audit(acct, lambda r: len(kinds(r, "hangup")) >= 2)
    assert [(r["rule"], r["clause"]) for r in kinds(rows, "hangup")] == [
        ("max_short_calls", "mass_calling")] * 2
    assert_no_channels_left(fs_target, acct)
    # The same volume of calls longer than short_call (here 1s): untouched.
    calm = place_calls("calm", accounts.calm, calls=6, rate=10, limit=3, hold_ms=2000).run()
    assert calm.returncode == 0 and calm.counts()["caller_bye"] == 6, calm.describe()
    assert guard.audit(accounts.calm) == [], guard.tail()
