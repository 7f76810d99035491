"""Issue 15 x issue 12: a replay applies destination classes and minute budgets as the daemon
does: the dialled number of a CDR row reaches the tracker, exempt (emergency) calls are never
touched, and a ``max_minutes`` deadline is cut at its own second of the recorded clock."""
from __future__ import annotations

import json
from pathlib import Path

from esl_guard.replay.cdr import json_call
from tests.test_replay import CDR, T0, UUIDS, conf, run_json, stamp, utc, write_rows

__all__ = ["utc"]  # the autouse TZ=UTC fixture of test_replay applies here too

CLASSES = """max_concurrent_calls = 3
lock_after = 1/1m
lock_duration = 10m
[destination:premium]
prefixes = 1900 44871
max_concurrent_calls = 1
[destination:emergency]
prefixes = 911 112
exempt = true"""


def row(uuid: str, account: str, number: str, start: float, answer: float | None,
        end: float) -> tuple[float, str]:
    """One mod_cdr_csv line of the `example` template, keyed by its end (the file order)."""
    vals = [account, account, number, "public", stamp(start),
            "" if answer is None else stamp(answer), stamp(end), str(int(end - start)),
            "0" if answer is None else str(int(end - answer)), "NORMAL_CLEARING", uuid, "",
            account, "PCMU", "PCMU"]
    return end, ",".join(f'"{v}"' for v in vals) + "\n"


def test_premium_over_its_class_limit_is_hung_up_and_emergency_is_never_touched(
        tmp_path: Path) -> None:
    cdr = write_rows(tmp_path / "Master.csv", [
        row(UUIDS[0], "acme", "+19005550100", T0, T0 + 1, T0 + 600),       # premium, first
        row(UUIDS[1], "acme", "19005550101", T0 + 10, T0 + 11, T0 + 300),  # premium, second
        row(UUIDS[2], "acme", "911", T0 + 20, T0 + 20, T0 + 4000),         # locked, emergency
        row(UUIDS[3], "acme", "5551234", T0 + 30, None, T0 + 31),          # locked, ordinary
        row(UUIDS[4], "other", "112", T0 + 40, T0 + 40, T0 + 50)])
    docs, summary = run_json(conf(tmp_path, "max_call_duration = 60s\n" + CLASSES), [cdr])
    rows = [(d["epoch"], d["kind"], d["rule"], d["uuid"], d["destination"],
             d["destination_class"]) for d in docs]
    # the second premium call is over the class's limit (the account's 3 is not reached)
    assert (T0 + 10, "hangup", "max_concurrent_calls", UUIDS[1], "19005550101",
            "premium") in rows
    premium = next(d for d in docs if d["kind"] == "violation")
    assert (premium["uuid"], premium["limit"], premium["observed"]) == (UUIDS[1], "1", "2")
    assert (T0 + 10, "lock", "lock_after", None, None, None) in rows
    assert (T0 + 30, "hangup", "locked", UUIDS[3], "5551234", None) in rows
    # the calls to emergency numbers: logged as exempt, never refused, hung up or timed
    assert [r for r in rows if r[3] in (UUIDS[2], UUIDS[4])] == [
        (T0 + 20, "exempt", None, UUIDS[2], "911", "emergency"),
        (T0 + 40, "exempt", None, UUIDS[4], "112", "emergency")]
    # the lock ends the account's live calls (not its emergency call, up for 66 min while
    # max_call_duration is 60 s), with their class
    assert (T0 + 10, "hangup", "locked", UUIDS[0], "+19005550100", "premium") in rows
    assert summary["calls_hung_up"] == 3 and summary["accounts_locked"] == ["acme"]


def test_a_class_duration_limit_shorter_than_the_accounts_is_ticked(tmp_path: Path) -> None:
    cdr = write_rows(tmp_path / "Master.csv", [
        row(UUIDS[0], "acme", "448710000", T0, T0 + 5, T0 + 3600),
        row(UUIDS[1], "acme", "5551234", T0, T0 + 5, T0 + 3600)])
    docs, _ = run_json(conf(tmp_path, "max_call_duration = 1h\n[destination:premium]\n"
                            "prefixes = 44871\nmax_call_duration = 30s"), [cdr])
    assert [(d["epoch"], d["kind"], d["uuid"], d["destination_class"]) for d in docs] == [
        (T0 + 35, "violation", UUIDS[0], "premium"), (T0 + 35, "hangup", UUIDS[0], "premium")]


def test_max_minutes_cuts_the_call_that_reaches_n_and_refuses_while_full(
        tmp_path: Path) -> None:
    cdr = write_rows(tmp_path / "Master.csv", [
        row(UUIDS[0], "acme", "5551234", T0, T0, T0 + 400),              # 400 s
        row(UUIDS[1], "acme", "5551234", T0 + 500, T0 + 500, T0 + 2000),  # 600 s at T0 + 700
        row(UUIDS[2], "acme", "5551234", T0 + 800, None, T0 + 810),       # window full
        row(UUIDS[3], "other", "5551234", T0 + 900, T0 + 900, T0 + 1400),  # not acme's budget
        row(UUIDS[4], "acme", "5551234", T0 + 4200, T0 + 4200, T0 + 4210)])  # window slid
    docs, summary = run_json(conf(tmp_path, "max_minutes = 10/1h"), [cdr])
    assert [(d["epoch"], d["kind"], d["rule"], d["uuid"]) for d in docs] == [
        (T0 + 700, "violation", "max_minutes", UUIDS[1]),
        (T0 + 700, "hangup", "max_minutes", UUIDS[1]),
        (T0 + 800, "violation", "max_minutes", UUIDS[2]),
        (T0 + 800, "hangup", "max_minutes", UUIDS[2])]
    assert summary["calls_hung_up"] == 2


def test_a_class_minute_budget_counts_only_the_calls_to_the_class(tmp_path: Path) -> None:
    cdr = write_rows(tmp_path / "Master.csv", [
        row(UUIDS[0], "acme", "5551234", T0, T0, T0 + 3000),            # not premium
        row(UUIDS[1], "acme", "19005550100", T0 + 100, T0 + 100, T0 + 3000)])
    docs, _ = run_json(conf(tmp_path, "[destination:premium]\nprefixes = 1900\n"
                            "max_minutes = 5/1d"), [cdr])
    assert [(d["epoch"], d["kind"], d["uuid"], d["destination_class"]) for d in docs] == [
        (T0 + 400, "violation", UUIDS[1], "premium"), (T0 + 400, "hangup", UUIDS[1], "premium")]


def test_json_cdrs_carry_the_dialled_number() -> None:
    """mod_json_cdr of the real switch: the number is in the caller profile only; a
    ``destination_number`` variable (set by a dialplan) comes first."""
    src = json.loads(next((CDR / "json").iterdir()).read_text())
    call = json_call(src, "accountcode", 1)
    assert "destination_number" not in src["variables"]
    assert not isinstance(call, str) and call[9] == "9004"
    src["variables"]["destination_number"] = "%2B19005550100"  # URL-encoded as written
    call = json_call(src, "accountcode", 1)
    assert not isinstance(call, str) and call[9] == "+19005550100"
