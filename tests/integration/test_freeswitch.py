"""esl-guard against a real FreeSWITCH, with sipp placing real SIP calls.

Without ESL_GUARD_FS (or without sipp) the whole module is skipped with one line.

One esl-guard daemon (`python -m esl_guard run`) for the module, with a per-account policy.
Each test checks both sides: what sipp saw (which calls ended early, with which SIP message) and
what esl-guard recorded (`esl-guard audit --json`).

The accounts of the external profile arrive the way the captures show (FIXTURES-README.md): the
dialplan sets accountcode from the X-Account header, so esl-guard learns it on CHANNEL_ANSWER and
an over-limit call is ended just after it is answered: FreeSWITCH sends BYE (remote_bye).  A kill
that lands before the answer shows as a 603 (CALL_REJECTED); both are accepted.

The last test restarts FreeSWITCH while a call is up (SIGKILL and start for ESL_GUARD_FS_BIN,
docker compose kill + start, or ESL_GUARD_FS_RESTART): the call ended unseen and must not count
after the reconnect; mod_hash is empty again, so esl-guard must push its locks again.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.sipprun import Outcome, SippResult
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

CALL_REJECTED_Q850 = 21  # esl-guard's hangup_cause in these tests; SIP 603 before answer
NO_RESTART = ("no way to restart FreeSWITCH: set ESL_GUARD_FS_RESTART='command', or use "
              "ESL_GUARD_FS_BIN or `make integration` (docker compose kill + start)")
RECONNECT_TIMEOUT = 120.0  # esl-guard backs off up to 30 s between attempts


@pytest.fixture(scope="module")
def accounts(run_id: str) -> SimpleNamespace:
    return SimpleNamespace(
        conc=f"conc-{run_id}", burst=f"burst-{run_id}", long=f"long-{run_id}",
        clean=f"clean-{run_id}", noisy=f"noisy-{run_id}", locked=f"locked-{run_id}",
        digest="acct1001",  # accountcode of directory user 1001 (freeswitch/directory)
    )


@pytest.fixture(scope="module")
def guard(fs_target: Target, accounts: SimpleNamespace,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path_factory.mktemp("guard"), fs_target, {
        accounts.conc: {"max_concurrent_calls": "2"},
        accounts.burst: {"max_call_rate": "3/10s"},
        accounts.long: {"max_call_duration": "3s"},
        # generous limits the clean account stays well inside
        accounts.clean: {"max_concurrent_calls": "3", "max_call_rate": "10/10s",
                         "max_call_duration": "30s"},
        accounts.noisy: {"max_concurrent_calls": "1"},
        accounts.digest: {"max_concurrent_calls": "1"},
    })
    g.start()
    yield g
    g.stop()


#: What FreeSWITCH may say when it refuses a call before the answer: esl-guard's 603 (its
#: hangup_cause CALL_REJECTED), or the shipped dialplan's admission gate (issue 12): 486
#: (USER_BUSY) at the concurrency limit, 503 (NORMAL_TEMPORARY_FAILURE) over the call rate.
REFUSALS = {"603": CALL_REJECTED_Q850, "486": 17, "503": 41}


def assert_ended_by_guard(ended: list[Outcome], res: SippResult) -> None:
    """FreeSWITCH ended these calls for esl-guard: BYE after the answer, or a refusal before
    it (:data:`REFUSALS`); when FreeSWITCH gave a Reason header, its Q.850 cause is the one of
    that refusal (21, CALL_REJECTED, for a BYE)."""
    for o in ended:
        assert o.outcome == "remote_bye" or (o.outcome == "rejected" and o.code in REFUSALS), \
            f"call {o.call} ended with {o.outcome} {o.code}\n{res.describe()}"
        cause = REFUSALS.get(o.code, CALL_REJECTED_Q850)
        assert o.q850 in (None, cause), \
            f"call {o.call}: Reason {o.reason!r} is not Q.850 cause {cause}\n{res.describe()}"


def assert_no_channels_left(target: Target, account: str) -> None:
    eslsock.poll(lambda: eslsock.channels_of(target, account) == 0, 10,
                 what=f"no live FreeSWITCH channel of {account}")


def assert_guard_ended(guard: GuardProcess, account: str, rule: str, n: int) -> None:
    """esl-guard recorded n violations of `rule` and n hangups for the account, not dry-run,
    each hangup naming a channel uuid on node `default`."""
    rows = guard.wait_audit(account, lambda r: len(kinds(r, "hangup")) >= n)
    violations, hangups = kinds(rows, "violation", rule), kinds(rows, "hangup", rule)
    assert len(violations) == n and len(hangups) == n, rows
    for row in hangups:
        assert row["uuid"] and row["node"] == "default" and row["dry_run"] is False, row
    assert len({row["uuid"] for row in hangups}) == n, rows
    assert not kinds(rows, "lock"), f"no lock_after is configured: {rows}"


def test_calls_over_max_concurrent_calls_are_ended(guard: GuardProcess, fs_target: Target,
                                                   accounts: SimpleNamespace,
                                                   place_calls: PlaceCalls) -> None:
    """3 calls at once, max_concurrent_calls = 2: the third is ended, the other two are held
    to the end by the caller."""
    res = place_calls("concurrent", accounts.conc, calls=3, rate=10, limit=3,
                      hold_ms=6000).run()
    assert res.returncode == 0 and len(res.outcomes) == 3, res.describe()
    assert res.counts()["caller_bye"] == 2, res.describe()
    ended = res.ended_by_freeswitch()
    assert len(ended) == 1, res.describe()
    assert_ended_by_guard(ended, res)
    assert_guard_ended(guard, accounts.conc, "max_concurrent_calls", 1)
    assert_no_channels_left(fs_target, accounts.conc)


def test_burst_over_max_call_rate_is_ended(guard: GuardProcess, fs_target: Target,
                                           accounts: SimpleNamespace,
                                           place_calls: PlaceCalls) -> None:
    """6 calls in 0.5 s, max_call_rate = 3/10s: the first 3 are kept, the last 3 ended."""
    res = place_calls("burst", accounts.burst, calls=6, rate=10, limit=6, hold_ms=5000).run()
    assert res.returncode == 0 and len(res.outcomes) == 6, res.describe()
    assert res.counts()["caller_bye"] == 3, res.describe()
    ended = res.ended_by_freeswitch()
    assert len(ended) == 3, res.describe()
    assert_ended_by_guard(ended, res)
    assert_guard_ended(guard, accounts.burst, "max_call_rate", 3)
    assert_no_channels_left(fs_target, accounts.burst)


def test_call_over_max_call_duration_is_ended(guard: GuardProcess, fs_target: Target,
                                              accounts: SimpleNamespace,
                                              place_calls: PlaceCalls) -> None:
    """One call the caller would hold 20 s, max_call_duration = 3s: FreeSWITCH sends BYE
    after about 3 s (esl-guard checks every 0.2 s)."""
    res = place_calls("duration", accounts.long, calls=1, hold_ms=20000).run()
    assert res.returncode == 0 and len(res.outcomes) == 1, res.describe()
    assert res.outcomes[0].outcome == "remote_bye", res.describe()
    assert_ended_by_guard(res.outcomes, res)
    assert 3.0 <= res.elapsed < 15.0, f"ended after {res.elapsed:.1f}s\n{res.describe()}"
    assert_guard_ended(guard, accounts.long, "max_call_duration", 1)
    assert_no_channels_left(fs_target, accounts.long)


def test_clean_account_is_not_touched(guard: GuardProcess, fs_target: Target,
                                      accounts: SimpleNamespace,
                                      place_calls: PlaceCalls) -> None:
    """A clean account's calls run to the end while another account is being cut at the
    same time, and esl-guard records nothing about it."""
    clean = place_calls("clean", accounts.clean, calls=4, rate=2, limit=2, hold_ms=2500).start()
    noisy = place_calls("noisy", accounts.noisy, calls=3, rate=10, limit=3,
                        hold_ms=4000).start()
    res_clean, res_noisy = clean.wait(), noisy.wait()
    assert res_clean.returncode == 0, res_clean.describe()
    assert res_clean.counts() == {"caller_bye": 4}, res_clean.describe()
    # enforcement was active meanwhile: 2 of the 3 noisy calls (limit 1) were ended
    assert len(res_noisy.ended_by_freeswitch()) == 2, res_noisy.describe()
    assert_guard_ended(guard, accounts.noisy, "max_concurrent_calls", 2)
    # the noisy rows are written, so the clean account's would be too
    assert guard.audit(accounts.clean) == [], guard.tail()


def test_locked_account_is_refused_by_the_dialplan(guard: GuardProcess, fs_target: Target,
                                                   accounts: SimpleNamespace,
                                                   place_calls: PlaceCalls) -> None:
    """`esl-guard lock ACCOUNT --for 10m` pushes the lock into mod_hash; the dialplan check of
    conf/dialplan-locked-accounts.xml then refuses the account's calls with 403 before
    answering (esl-guard itself would have said 603)."""
    acct = accounts.locked
    guard.lock(acct, "10m")
    try:
        value = eslsock.poll(lambda: eslsock.hash_select(fs_target, "esl_guard", acct), 15,
                             what=f"hash select/esl_guard/{acct}")
        assert value.isdigit() and int(value) > time.time(), value  # the expiry, epoch s
        res = place_calls("locked", acct, scenario="uac_locked.xml", calls=2, rate=10, limit=2,
                          hold_ms=5000).run()
        assert res.returncode == 0, res.describe()
        assert [(o.outcome, o.code) for o in res.outcomes] == [("rejected", "403")] * 2, \
            res.describe()
        rows = guard.audit(acct)
        assert len(kinds(rows, "lock", "manual")) == 1, rows
        assert_no_channels_left(fs_target, acct)
    finally:
        guard.unlock(acct)
    eslsock.poll(lambda: eslsock.hash_select(fs_target, "esl_guard", acct) is None, 15,
                 what=f"hash delete/esl_guard/{acct} after unlock")


def test_directory_user_over_the_limit_is_ended(guard: GuardProcess, fs_target: Target,
                                                accounts: SimpleNamespace,
                                                place_calls: PlaceCalls) -> None:
    """Digest-authenticated user 1001 (accountcode acct1001, known from CHANNEL_CREATE on),
    max_concurrent_calls = 1: of 2 calls one is ended, usually before the answer (603)."""
    res = place_calls("digest", "1001", scenario="uac_digest_hold.xml", digest=True, calls=2,
                      rate=10, limit=2, hold_ms=4000).run()
    assert res.returncode == 0 and len(res.outcomes) == 2, res.describe()
    assert res.counts()["caller_bye"] == 1, res.describe()
    ended = res.ended_by_freeswitch()
    assert len(ended) == 1, res.describe()
    assert_ended_by_guard(ended, res)
    assert_guard_ended(guard, accounts.digest, "max_concurrent_calls", 1)
    assert_no_channels_left(fs_target, accounts.digest)


def test_daemon_still_running(guard: GuardProcess) -> None:
    """Nothing above crashed the daemon (its log is in the test's tmp dir)."""
    assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
    assert "Traceback" not in Path(guard.log).read_text(errors="replace"), guard.tail(80)


def busiest_active(guard: GuardProcess, account: str) -> int | None:
    """The account's live calls in the daemon's status snapshot (written every 5 s)."""
    done = guard.cli("status", "--json", check=False)
    if done.returncode != 0:
        return None
    snap = json.loads(done.stdout or "{}").get("snapshot") or {}
    return next((b["active"] for b in snap.get("busiest", []) if b["account"] == account), 0)


def test_freeswitch_restart_with_calls_up(fs_target: Target, run_id: str, tmp_path: Path,
                                          place_calls: PlaceCalls, guard: GuardProcess,
                                          restart_freeswitch: Callable[[], None] | None) -> None:
    """FreeSWITCH dies (SIGKILL: its calls end without one event) while an account is at its
    limit of 1 call, and starts again.  After the reconnect the call that ended meanwhile no
    longer counts (of 2 new calls exactly 1 is ended, not both), mod_hash holds the lock
    again and the dialplan refuses the locked account."""
    if restart_freeswitch is None:
        pytest.skip(NO_RESTART)
    locked, after = f"relock-{run_id}", f"after-{run_id}"
    # The module's daemon is connected too and owns the lock realm the dialplan reads: it takes
    # the lock.  This test's daemon (the account's limit) has a database of its own (two runs
    # cannot share an SQLite database, issue 14) and a realm of its own, so that neither
    # cleans the other's entries after the restart.
    module_guard = guard
    guard = GuardProcess(tmp_path / "guard", fs_target, {after: {"max_concurrent_calls": "1"}},
                         policy="lock_realm = esl_guard_restart\n")
    guard.start()
    try:
        module_guard.lock(locked, "10m")
        before = eslsock.poll(lambda: eslsock.hash_select(fs_target, "esl_guard", locked), 15,
                              what=f"hash select/esl_guard/{locked}")
        core_before = eslsock.core_uuid(fs_target)

        up = place_calls("up", after, calls=1, hold_ms=120_000).start()
        eslsock.poll(lambda: busiest_active(guard, after) == 1, 20,
                     what=f"esl-guard to count the call of {after} that is up")
        assert eslsock.channels_of(fs_target, after) == 1

        restart_freeswitch()
        assert eslsock.core_uuid(fs_target) != core_before, "FreeSWITCH did not restart"
        up.stop()  # its call died with FreeSWITCH; sipp would only notice at the end of the hold

        again = eslsock.poll(lambda: eslsock.hash_select(fs_target, "esl_guard", locked),
                             RECONNECT_TIMEOUT, interval=0.5,
                             what=f"esl-guard to push {locked} again after the restart")
        assert again == before, (before, again)
        # The module's daemon may have pushed it: wait for THIS daemon's resync too, or the new
        # calls below could start before it reconnects and be adopted as calls already up.
        eslsock.poll(lambda: guard.log.read_text(errors="replace").count("initial resync") >= 2,
                     RECONNECT_TIMEOUT, interval=0.2,
                     what="esl-guard to reconnect and resync after the restart")
        # it saw the new Core-UUID: the call of the killed run stopped counting at once
        assert "FreeSWITCH restarted (new Core-UUID" in guard.log.read_text(errors="replace"), \
            guard.tail()

        # the pushed lock works: the dialplan refuses the account again
        res = place_calls("relocked", locked, scenario="uac_locked.xml", calls=1,
                          hold_ms=5000).run()
        assert res.returncode == 0 and [(o.outcome, o.code) for o in res.outcomes] == \
            [("rejected", "403")], res.describe()

        # the call that ended while FreeSWITCH was down is gone: one of two new calls is kept
        res = place_calls("after", after, calls=2, rate=10, limit=2, hold_ms=4000).run()
        assert res.returncode == 0 and res.counts()["caller_bye"] == 1, res.describe()
        assert len(res.ended_by_freeswitch()) == 1, res.describe()
        assert_ended_by_guard(res.ended_by_freeswitch(), res)
        rows = guard.wait_audit(after, lambda r: len(kinds(r, "hangup")) >= 1)
        assert len(kinds(rows, "violation", "max_concurrent_calls")) == 1, rows
        assert len(kinds(rows, "hangup", "max_concurrent_calls")) == 1, rows
        assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
    finally:
        module_guard.unlock(locked)
        guard.stop()
