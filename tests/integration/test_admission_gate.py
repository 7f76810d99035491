"""Issue 12, section 1: over-limit calls are refused BEFORE the answer, whatever the far end does.

The account is set by the dialplan (the `public` context's inline `set accountcode` from the
X-Account header), so the A-leg's CHANNEL_CREATE does not carry it.  esl-guard learns it from the
`set`'s CHANNEL_EXECUTE_COMPLETE, and pushes the admission gate into mod_hash
(`admit_esl_guard/<account>`: `busy:UNTIL` / `rate:UNTIL`), which the shipped dialplan snippet
reads before routing (486 / 503); locks are refused by the same snippet (403).

For each limit (concurrency with one call held up, rate, lock), 20 calls to each of three
targets, all sent at once (one sipp per target, in parallel): a bridge to a UAS that answers AT
ONCE with 200 (no 180/183: no CHANNEL_PROGRESS at all), a bridge to a UAS that rings 3 s, and an
extension that answers after a 3 s pause with no ringing.  Every call must get a 4xx/6xx final,
never a 200, and no far end may ever answer.  Then two calls racing (5 ms apart, limit 1) to a
UAS that answers 100 ms after the INVITE, for 20 accounts at once: exactly one of each pair is
answered.  And no stale refusal: once a call ended (or the rate window reopened), the account's
next call within the limit is admitted.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.sipprun import Sipp, SippResult
from tests.integration.target import Target
from tests.integration.test_freeswitch import assert_no_channels_left

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

GATE_REALM = "admit_esl_guard"
N = 20  # calls per target, and racing pairs
# extension -> (the far end's sipp scenario, its port); None: no far end (9006 answers itself)
TARGETS = {"9008": ("uas_answer_now.xml", 5091), "9005": ("uas_ring.xml", 5090),
           "9006": None}
RACE_UAS = ("uas_answer_100ms.xml", 5092)  # extension 9009


@pytest.fixture(scope="module")
def accounts(run_id: str) -> SimpleNamespace:
    return SimpleNamespace(busy=f"gbusy-{run_id}", rate=f"grate-{run_id}",
                           locked=f"glocked-{run_id}", reopen=f"greopen-{run_id}",
                           race=[f"grace{i}-{run_id}" for i in range(N)])


@pytest.fixture(scope="module")
def guard(fs_target: Target, accounts: SimpleNamespace,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProcess]:
    limits = {accounts.busy: {"max_concurrent_calls": "1"},
              accounts.rate: {"max_call_rate": "1/10m"},
              accounts.locked: {"max_concurrent_calls": "5"},
              accounts.reopen: {"max_call_rate": "1/3s"}}
    limits.update({a: {"max_concurrent_calls": "1"} for a in accounts.race})
    g = GuardProcess(tmp_path_factory.mktemp("guard-gate"), fs_target, limits)
    g.start()
    yield g
    g.stop()


def gate(target: Target, account: str) -> str | None:
    return eslsock.hash_select(target, GATE_REALM, account)


def channel_uuids(target: Target, account: str) -> list[str]:
    doc = json.loads(eslsock.api(target, "show channels as json") or "{}")
    return [row["uuid"] for row in doc.get("rows", []) if row.get("accountcode") == account]


def assert_admitted(place_calls: PlaceCalls, name: str, account: str, hold_ms: int) -> None:
    """One call of `account` to 9001: answered and held to its end by the caller."""
    res = place_calls(name, account, dest="9001", calls=1, hold_ms=hold_ms).run()
    assert res.counts() == {"caller_bye": 1}, res.describe()


def final_codes(res: SippResult) -> Counter[str]:
    return Counter(o.code for o in res.outcomes if o.outcome == "rejected")


def assert_all_refused(res: SippResult, codes: set[str]) -> None:
    """Every call got a 4xx/6xx final from FreeSWITCH, never a 200 (uac_locked.xml reports an
    answer as `answered` and fails the call)."""
    assert len(res.outcomes) == N and res.counts() == {"rejected": N}, res.describe()
    assert set(final_codes(res)) <= codes, res.describe()


def refuse_everywhere(place_calls: PlaceCalls, sipp_dir: Path, fs_target: Target, name: str,
                      account: str, codes: set[str], live: int = 0) -> None:
    """N calls of `account` to each target at once; all refused, no far end ever answers;
    the account's `live` calls (held up) are all it has left."""
    far: list[Sipp] = []
    for spec in TARGETS.values():
        if spec is None:
            continue
        uas = Sipp.uas(f"{name}_uas{spec[1]}", spec[0], local_ip=fs_target.sipp_ip,
                       workdir=sipp_dir, calls=N, port=spec[1], timeout=60).start()
        place_calls.started.append(uas)
        uas.wait_listening()
        far.append(uas)
    callers = [place_calls(f"{name}_{dest}", account, scenario="uac_locked.xml", dest=dest,
                           calls=N, rate=50, limit=N, hold_ms=8000).start()
               for dest in TARGETS]
    for res in [c.wait() for c in callers]:
        assert_all_refused(res, codes)
    for uas in far:
        uas.stop()
        seen = uas.result()
        assert seen.counts().get("answered", 0) == 0, seen.describe()
    eslsock.poll(lambda: eslsock.channels_of(fs_target, account) == live, 10,
                 what=f"{live} live FreeSWITCH channels of {account}")


def test_an_account_at_its_concurrency_limit_is_refused_before_the_answer(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls, sipp_dir: Path) -> None:
    acct = accounts.busy
    held = place_calls("held", acct, dest="9001", calls=1, hold_ms=60_000).start()
    value = eslsock.poll(lambda: gate(fs_target, acct), 15, what=f"the gate of {acct}")
    assert value.startswith("busy:"), value
    refuse_everywhere(place_calls, sipp_dir, fs_target, "busy", acct, {"486", "603"}, live=1)
    # esl-guard saw every refused call too (from the set's CHANNEL_EXECUTE_COMPLETE)
    guard.wait_audit(acct, lambda r: len(kinds(r, "hangup", "max_concurrent_calls")) >= 3 * N)
    # the held call was never touched; it ends now: the next call is admitted
    (uuid,) = channel_uuids(fs_target, acct)
    eslsock.api(fs_target, f"uuid_kill {uuid} NORMAL_CLEARING")
    assert held.wait().counts() == {"remote_bye": 1}
    eslsock.poll(lambda: gate(fs_target, acct) is None, 10, what="the gate to open")
    assert_admitted(place_calls, "after", acct, 1000)


def test_an_account_over_its_rate_is_refused_before_the_answer(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls, sipp_dir: Path) -> None:
    acct = accounts.rate
    assert_admitted(place_calls, "first", acct, 1000)
    value = eslsock.poll(lambda: gate(fs_target, acct), 15, what=f"the gate of {acct}")
    assert value.startswith("rate:"), value
    refuse_everywhere(place_calls, sipp_dir, fs_target, "rate", acct, {"503", "603"})
    guard.wait_audit(acct, lambda r: len(kinds(r, "hangup", "max_call_rate")) >= 3 * N)


def test_a_locked_account_is_refused_before_the_answer(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls, sipp_dir: Path) -> None:
    acct = accounts.locked
    guard.lock(acct, "10m")
    try:
        eslsock.poll(lambda: eslsock.hash_select(fs_target, "esl_guard", acct), 15,
                     what=f"the lock of {acct}")
        refuse_everywhere(place_calls, sipp_dir, fs_target, "locked", acct, {"403", "603"})
    finally:
        guard.unlock(acct)


def test_the_rate_gate_reopens_with_time(guard: GuardProcess, fs_target: Target,
                                         accounts: SimpleNamespace,
                                         place_calls: PlaceCalls) -> None:
    """max_call_rate = 1/3s: the second call is refused; once the window reopened (the gate
    is deleted by esl-guard's timer), the next call is admitted."""
    acct = accounts.reopen
    assert_admitted(place_calls, "first", acct, 500)
    eslsock.poll(lambda: gate(fs_target, acct), 10, what=f"the gate of {acct}")
    second = place_calls("second", acct, scenario="uac_locked.xml", dest="9001", calls=1,
                         hold_ms=3000).run()
    assert second.counts() == {"rejected": 1}, second.describe()
    eslsock.poll(lambda: gate(fs_target, acct) is None, 15, what="the rate gate to reopen")
    assert_admitted(place_calls, "third", acct, 500)


def test_two_racing_calls_the_over_limit_one_refused_before_the_answer(
        guard: GuardProcess, fs_target: Target, accounts: SimpleNamespace,
        place_calls: PlaceCalls, sipp_dir: Path) -> None:
    """20 accounts with max_concurrent_calls = 1 each send two calls about 2 ms apart (pairs
    100 ms apart: uac_race.xml, the account and start delay of each call from a CSV) to
    extension 9009, a bridge to a UAS that answers 100 ms after the INVITE with no 180/183.
    Of each pair exactly one is answered and held, the other gets a 4xx/6xx final, and the far
    end answers exactly one call per pair: the over-limit one was refused before the answer."""
    csv = sipp_dir / "race_accounts.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{a};{k * 100};\n{a};{k * 100 + 1};\n"
                                           for k, a in enumerate(accounts.race)))
    uas = Sipp.uas("race_uas", RACE_UAS[0], local_ip=fs_target.sipp_ip, workdir=sipp_dir,
                   calls=2 * N, port=RACE_UAS[1], timeout=60).start()
    place_calls.started.append(uas)
    uas.wait_listening()
    caller = place_calls("race", accounts.race[0], scenario="uac_race.xml", dest="9009",
                         calls=2 * N, rate=1000, limit=2 * N, hold_ms=4000)
    caller.args += ["-inf", str(csv)]
    res = caller.run()
    assert len(res.outcomes) == 2 * N, res.describe()
    # the race really happened: the two INVITEs of every pair left within 10 ms
    sent = invites_sent(sipp_dir / "race_messages.log")
    for k, acct in enumerate(accounts.race):
        gap = abs(sent[2 * k + 2] - sent[2 * k + 1])
        assert gap < 0.010, (acct, gap)
    by_account: dict[str, list[str]] = {}
    for o in res.outcomes:
        by_account.setdefault(accounts.race[(o.call - 1) // 2], []).append(o.outcome)
    for acct, outcomes in sorted(by_account.items()):
        assert sorted(outcomes) == ["caller_bye", "rejected"], (acct, outcomes, res.describe())
    assert all(o.code[:1] in "456" for o in res.by("rejected")), res.describe()
    eslsock.poll(lambda: far_done(uas), 15, what="the far end to log every call it saw")
    uas.stop()
    far = uas.result()
    assert far.counts().get("answered", 0) == N, far.describe()
    for acct in accounts.race:
        assert_no_channels_left(fs_target, acct)


def invites_sent(trace: Path) -> dict[int, float]:
    """sipp's -trace_msg: when each call's INVITE was first sent (call number -> epoch s)."""
    sent: dict[int, float] = {}
    text = trace.read_text(errors="replace")
    for block in re.split(r"(?:^|\n)-{20,} ", text):
        stamp, _, message = block.partition("\n")
        if not message.startswith("UDP message sent") or "\nINVITE " not in message:
            continue
        m = re.search(r"^From: .*;tag=\d+SIPpTag00(\d+)", message, re.M)
        if m:
            sent.setdefault(int(m.group(1)), datetime.fromisoformat(stamp.strip()).timestamp())
    return sent


def far_done(uas: Sipp) -> bool:
    path = uas.workdir / f"{uas.name}_messages.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    dialogs = len(set(re.findall(r"^Call-ID: *(\S+)", text, re.M | re.I)))
    return 0 < dialogs == len(uas.result().outcomes)


def test_daemon_still_running(guard: GuardProcess) -> None:
    assert guard.proc is not None and guard.proc.poll() is None, guard.tail()
    assert "Traceback" not in guard.log.read_text(errors="replace"), guard.tail(80)
