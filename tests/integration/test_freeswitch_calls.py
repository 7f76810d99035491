"""What only a real FreeSWITCH shows: calls that ring before they are answered, bridged calls
and calls through loopback/ channels.

Without ESL_GUARD_FS / ESL_GUARD_FS_BIN (or without sipp) the whole module is skipped with one
line.  One esl-guard for the module with resync_interval = 1s, so that reconciliations
(`show channels as json`) run while the calls ring: FreeSWITCH's core db lists a ringing call's
account as soon as the dialplan sets it, before any subscribed event carries it.

Every test places two calls at once for an account whose max_concurrent_calls is 1 and checks
both sides: sipp saw exactly one call ended by FreeSWITCH and the other held to its end by the
caller; the audit trail holds exactly one violation and one hangup of max_concurrent_calls.  A
leg counted as a call of its own would end both calls; a ringing call let through unchecked
would end none.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess
from tests.integration.sipprun import Sipp, SippResult
from tests.integration.target import Target
from tests.integration.test_freeswitch import (
    assert_ended_by_guard,
    assert_guard_ended,
    assert_no_channels_left,
)

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

UAS_PORT = 5090  # extension 9005 bridges to sofia/external/9999@${sip_network_ip}:5090
HOLD_MS = 8000   # the caller's hold; it also bounds the wait for the answer (3 s of ringing)


@pytest.fixture(scope="module")
def accounts(run_id: str) -> SimpleNamespace:
    return SimpleNamespace(late=f"late-{run_id}", ringing=f"ringing-{run_id}",
                           loop=f"loop-{run_id}")


@pytest.fixture(scope="module")
def guard(fs_target: Target, accounts: SimpleNamespace,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path_factory.mktemp("guard-calls"), fs_target, {
        accounts.late: {"max_concurrent_calls": "1"},
        accounts.ringing: {"max_concurrent_calls": "1"},
        accounts.loop: {"max_concurrent_calls": "1"},
    }, resync_interval="1s")
    g.start()
    yield g
    g.stop()


def periodic_resyncs(guard: GuardProcess) -> int:
    return guard.log.read_text(errors="replace").count("periodic resync")


def far_dialogs(uas: Sipp) -> int:
    """How many calls reached the UAS: the distinct Call-IDs of its message trace."""
    path = uas.workdir / f"{uas.name}_messages.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return len(set(re.findall(r"^Call-ID: *(\S+)", text, re.M | re.I)))


def assert_one_ended_one_kept(res: SippResult) -> None:
    assert res.returncode == 0 and len(res.outcomes) == 2, res.describe()
    assert res.counts()["caller_bye"] == 1, res.describe()
    ended = res.ended_by_freeswitch()
    assert len(ended) == 1, res.describe()
    assert_ended_by_guard(ended, res)


def test_calls_ringing_before_the_answer_meet_the_limit(guard: GuardProcess, fs_target: Target,
                                                        accounts: SimpleNamespace,
                                                        place_calls: PlaceCalls) -> None:
    """Extension 9006 answers after 3 s of ringing (no 180, no media, so no CHANNEL_PROGRESS):
    a reconciliation learns both accounts before CHANNEL_ANSWER.  The over-limit call is
    ended; the other is untouched.  (Before the fix both calls were held to the end.)"""
    before = periodic_resyncs(guard)
    res = place_calls("late", accounts.late, dest="9006", calls=2, rate=20, limit=2,
                      hold_ms=HOLD_MS).run()
    assert periodic_resyncs(guard) > before + 2, "no reconciliation ran during the calls"
    assert_one_ended_one_kept(res)
    assert_guard_ended(guard, accounts.late, "max_concurrent_calls", 1)
    assert_no_channels_left(fs_target, accounts.late)


def test_bridged_calls_ringing_at_the_far_end_meet_the_limit_and_count_once(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls, sipp_dir: Path) -> None:
    """Extension 9005 bridges to a sipp UAS that sends 180, rings 3 s, then answers.  Of two
    calls (A-leg plus B-leg each) the over-limit one is ended, usually while it rings (the UAS
    sees a CANCEL); the other, bridged, is held to the end: its B-leg is not a second call."""
    uas = Sipp.uas("uas", "uas_ring.xml", local_ip=fs_target.sipp_ip, workdir=sipp_dir,
                   calls=2, port=UAS_PORT, timeout=60).start()
    place_calls.started.append(uas)
    uas.wait_listening()
    res = place_calls("ringing", accounts.ringing, dest="9005", calls=2, rate=20, limit=2,
                      hold_ms=HOLD_MS).run()
    assert_one_ended_one_kept(res)
    # Every call that reached the far end (each INVITE dialog, one Call-ID) ended there: the
    # kept one answered, then FreeSWITCH's BYE after the caller's; the over-limit one cancelled
    # while it rang, or answered and then BYE when esl-guard ended it after the answer.
    assert_no_channels_left(fs_target, accounts.ringing)
    eslsock.poll(lambda: 0 < far_dialogs(uas) == len(uas.result().outcomes), 10,
                 what="the far end to log the end of every call it saw")
    uas.stop()
    far = uas.result()
    assert far.counts()["answered"] >= 1 and set(far.counts()) <= {"answered", "cancelled"}, \
        far.describe()
    assert_guard_ended(guard, accounts.ringing, "max_concurrent_calls", 1)
    assert_no_channels_left(fs_target, accounts.ringing)


def test_a_call_through_loopback_channels_counts_once(guard: GuardProcess, fs_target: Target,
                                                      accounts: SimpleNamespace,
                                                      place_calls: PlaceCalls) -> None:
    """Extension 9007 bridges through loopback/9001: each call has three channels carrying
    the account (the caller's, loopback-a, and loopback-b which is inbound and runs 9001).
    Only the over-limit call is ended; the other is held to the end."""
    res = place_calls("loop", accounts.loop, dest="9007", calls=2, rate=20, limit=2,
                      hold_ms=HOLD_MS).run()
    assert_one_ended_one_kept(res)
    assert_guard_ended(guard, accounts.loop, "max_concurrent_calls", 1)
    assert_no_channels_left(fs_target, accounts.loop)


def test_daemon_still_running(guard: GuardProcess) -> None:
    assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
    assert "Traceback" not in guard.log.read_text(errors="replace"), guard.tail(80)
