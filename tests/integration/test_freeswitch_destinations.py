"""Destination classes on a real FreeSWITCH with sipp (issue 12): a locked account's call to an
emergency number is answered (the shipped dialplan check lets it through, esl-guard never
touches it) and audited as exempt; a premium call over its class limit is ended while the
account's call to a number in no class goes on.

Skipped, like test_freeswitch.py, without ESL_GUARD_FS or sipp.
"""
from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.integration import eslsock
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

CLASSES = """
[destination:premium]
prefixes = 1900 44871
max_concurrent_calls = 1

[destination:emergency]
prefixes = 112 911 999
exempt = true
"""


@pytest.fixture(scope="module")
def accounts(run_id: str) -> SimpleNamespace:
    return SimpleNamespace(sos=f"sos-{run_id}", premium=f"prem-{run_id}")


@pytest.fixture(scope="module")
def guard(fs_target: Target, accounts: SimpleNamespace,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path_factory.mktemp("guard-destinations"), fs_target, {
        accounts.sos: {"max_concurrent_calls": "0"},
        accounts.premium: {"max_concurrent_calls": "5"},
    }, policy=CLASSES)
    g.start()
    yield g
    g.stop()


def test_a_locked_account_s_emergency_call_is_answered_and_audited_as_exempt(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls) -> None:
    """The account is locked (in mod_hash) and allowed no call at all: its call to 112 is
    answered and held until the caller hangs up; its call to 9001 is refused by the dialplan
    (403)."""
    acct = accounts.sos
    guard.lock(acct, "10m")
    try:
        eslsock.poll(lambda: eslsock.hash_select(fs_target, "esl_guard", acct), 15,
                     what=f"hash select/esl_guard/{acct}")
        sos = place_calls("sos", acct, calls=1, rate=10, limit=1, hold_ms=3000, dest="112").run()
        assert sos.returncode == 0 and sos.counts()["caller_bye"] == 1, sos.describe()
        other = place_calls("sos-other", acct, scenario="uac_locked.xml", calls=1, rate=10,
                            limit=1, hold_ms=3000).run()
        assert [(o.outcome, o.code) for o in other.outcomes] == [("rejected", "403")], \
            other.describe()
        rows = guard.wait_audit(acct, lambda r: len(kinds(r, "exempt")) == 1)
        (row,) = kinds(rows, "exempt")
        assert (row["destination"], row["destination_class"], row["rule"]) == (
            "112", "emergency", None), row
        # the 9001 call refused by the dialplan is audited too (a hangup, rule locked): none
        # of the emergency call
        assert not [r for r in kinds(rows, "hangup") + kinds(rows, "violation")
                    if r["destination"] == "112"], rows
        assert [r["rule"] for r in kinds(rows, "hangup")] == ["locked"], rows
        assert_no_channels_left(fs_target, acct)
    finally:
        guard.unlock(acct)


def test_an_emergency_call_passes_the_admission_gate_of_an_account_at_its_limit(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls) -> None:
    """The account may have no call (max_concurrent_calls = 0): once esl-guard has seen it,
    the admission gate in mod_hash refuses its next call before routing (486), but not its
    call to 112, which is answered."""
    acct = accounts.sos
    first = place_calls("gate-first", acct, calls=1, rate=10, limit=1, hold_ms=3000).run()
    assert len(first.ended_by_freeswitch()) == 1, first.describe()  # over its limit of 0
    eslsock.poll(lambda: eslsock.hash_select(fs_target, "admit_esl_guard", acct), 15,
                 what=f"hash select/admit_esl_guard/{acct}")
    sos = place_calls("gate-sos", acct, calls=1, rate=10, limit=1, hold_ms=3000,
                      dest="112").run()
    assert sos.returncode == 0 and sos.counts()["caller_bye"] == 1, sos.describe()
    other = place_calls("gate-other", acct, scenario="uac_locked.xml", calls=1, rate=10,
                        limit=1, hold_ms=3000).run()
    assert [(o.outcome, o.code) for o in other.outcomes] == [("rejected", "486")], \
        other.describe()
    assert_no_channels_left(fs_target, acct)


def test_a_premium_call_over_its_class_limit_is_ended_a_plain_call_is_not(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls) -> None:
    """premium: max_concurrent_calls = 1 (the account may have 5): of 2 premium calls held
    together one is ended by esl-guard; the account's call to 9001 (in no class), up at the
    same time, is untouched."""
    acct = accounts.premium
    plain = place_calls("plain", acct, calls=1, rate=10, limit=1, hold_ms=6000).start()
    premium = place_calls("premium", acct, calls=2, rate=10, limit=2, hold_ms=4000,
                          dest="+19005550100").run()
    assert premium.returncode == 0 and len(premium.outcomes) == 2, premium.describe()
    assert premium.counts()["caller_bye"] == 1, premium.describe()
    ended = premium.ended_by_freeswitch()
    assert len(ended) == 1, premium.describe()
    assert_ended_by_guard(ended, premium)
    res = plain.wait()
    assert res.returncode == 0 and res.counts()["caller_bye"] == 1, res.describe()
    rows = guard.wait_audit(acct, lambda r: len(kinds(r, "hangup")) >= 1)
    (hangup,) = kinds(rows, "hangup")
    assert (hangup["rule"], hangup["destination"], hangup["destination_class"]) == (
        "max_concurrent_calls", "+19005550100", "premium"), rows
    assert_no_channels_left(fs_target, acct)


def test_a_class_at_its_limit_refuses_the_next_call_to_it_before_routing(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls) -> None:
    """premium: max_concurrent_calls = 1.  While a premium call is up, the admission gate of
    the class (mod_hash admit_esl_guard/ACCOUNT:premium) makes the dialplan refuse the next
    premium call with 486 before it is routed (never answered); a call to 9001 (in no class)
    is admitted; once the premium call ends the next premium call is admitted again."""
    acct = accounts.premium
    key = f"{acct}:premium"
    held = place_calls("gate-held", acct, calls=1, rate=10, limit=1, hold_ms=8000,
                       dest="+19005550100").start()
    eslsock.poll(lambda: eslsock.hash_select(fs_target, "admit_esl_guard", key), 15,
                 what=f"hash select/admit_esl_guard/{key}")
    refused = place_calls("gate-refused", acct, scenario="uac_locked.xml", calls=1, rate=10,
                          limit=1, hold_ms=2000, dest="19005550101").run()
    assert [(o.outcome, o.code) for o in refused.outcomes] == [("rejected", "486")], \
        refused.describe()
    plain = place_calls("gate-plain", acct, calls=1, rate=10, limit=1, hold_ms=1000).run()
    assert plain.returncode == 0 and plain.counts()["caller_bye"] == 1, plain.describe()
    res = held.wait()
    assert res.returncode == 0 and res.counts()["caller_bye"] == 1, res.describe()
    eslsock.poll(lambda: not eslsock.hash_select(fs_target, "admit_esl_guard", key), 15,
                 what=f"the gate {key} to be deleted")
    again = place_calls("gate-again", acct, calls=1, rate=10, limit=1, hold_ms=1000,
                        dest="+19005550102").run()
    assert again.returncode == 0 and again.counts()["caller_bye"] == 1, again.describe()
    assert_no_channels_left(fs_target, acct)


def test_daemon_still_running(guard: GuardProcess) -> None:
    assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
