"""Issue 15: `esl-guard replay` over CDRs and captures (formats, clock, order, compare, errors).

The CDR fixtures (tests/fixtures/cdr/) are the 210 real calls of plain_load.bin, written as
mod_cdr_csv and mod_json_cdr would have written them (see make_fixtures.py there).
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from esl_guard.cli import main
from esl_guard.replay.cdr import EXAMPLE_COLUMNS, sort_by_start
from esl_guard.replay.cli import replay

FIX = Path(__file__).parent / "fixtures"
CDR = FIX / "cdr"
CAPTURE = FIX / "esl" / "plain_load.bin"
UEPOCH_COLUMNS = ",".join(EXAMPLE_COLUMNS + ("start_uepoch", "answer_uepoch", "end_uepoch"))
UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(100)]


def replay_args(conf: Path, sources: Sequence[Path | str], *, as_json: bool = False,
                compare: Path | None = None, columns: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=str(conf), sources=[str(s) for s in sources], json=as_json,
                              compare=None if compare is None else str(compare),
                              cdr_columns=columns)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fixtures' *_stamp values are the capture box's local time: UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def conf(tmp_path: Path, policy: str, name: str = "p.conf") -> Path:
    path = tmp_path / name
    path.write_text(f"[freeswitch]\nhost = 127.0.0.1\n[database]\nurl = sqlite:///{tmp_path}/x.db"
                    f"\n[policy]\n{policy}\n")
    return path


def run_json(conf_path: Path, sources: Sequence[Path | str],
             columns: str | None = None) -> tuple[list[dict[str, object]], dict[str, object]]:
    out = io.StringIO()
    replay(replay_args(conf_path, sources, as_json=True, columns=columns), out)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    return docs[:-1], docs[-1]


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


T0 = 1_795_600_000.0  # 2026-11-25 10:13:20 UTC


def row(uuid: str, account: str, start: float, answer: float | None, end: float,
        bleg: str = "") -> str:
    """One mod_cdr_csv line of the `example` template."""
    vals = [account, account, "9001", "public", stamp(start),
            "" if answer is None else stamp(answer), stamp(end), str(int(end - start)),
            "0" if answer is None else str(int(end - answer)), "NORMAL_CLEARING", uuid, bleg,
            account, "PCMU", "PCMU"]
    return ",".join(f'"{v}"' for v in vals) + "\n"


def write_rows(path: Path, rows: list[tuple[float, str]]) -> Path:
    """Rows in END order, as mod_cdr_csv appends them."""
    path.write_text("".join(line for _, line in sorted(rows, key=lambda r: r[0])))
    return path


def call(uuid: str, account: str, start: float, answer: float | None, end: float,
         bleg: str = "") -> tuple[float, str]:
    return end, row(uuid, account, start, answer, end, bleg)


POLICY = """max_concurrent_calls = 4
max_call_rate = 12/10s
max_call_duration = 2500ms
lock_after = 3/1m
lock_duration = 10m"""


# --------------------------------------------------------------------------- formats


def test_csv_and_json_cdrs_of_the_same_calls_make_the_same_decisions(tmp_path: Path) -> None:
    p = conf(tmp_path, POLICY)
    from_csv, sum_csv = run_json(p, [CDR / "Master-uepoch.csv"], UEPOCH_COLUMNS)
    from_json, sum_json = run_json(p, [CDR / "json"])
    assert len(from_csv) > 100
    assert {d["rule"] for d in from_csv} >= {"max_call_rate", "max_call_duration", "lock_after",
                                            "locked"}
    assert from_csv == from_json
    del sum_csv["sources"], sum_json["sources"]
    assert sum_csv == sum_json
    assert sum_csv["calls_seen"] == 210 and sum_csv["bad_rows"] == 0


def test_the_example_template_equals_json_cdrs_at_its_one_second_resolution(
        tmp_path: Path) -> None:
    """mod_cdr_csv's *_stamp columns keep whole seconds; the same JSON CDRs cut to whole
    seconds (what the example template knows of them) decide exactly the same."""
    cut = tmp_path / "cut"
    cut.mkdir()
    for f in (CDR / "json").iterdir():
        doc = json.loads(f.read_text())
        var = doc["variables"]
        for what in ("start", "answer", "end"):
            var[f"{what}_uepoch"] = str(int(var[f"{what}_epoch"]) * 1_000_000)
        (cut / f.name).write_text(json.dumps(doc) + "\n")
    p = conf(tmp_path, POLICY)
    from_csv, _ = run_json(p, [CDR / "Master.csv"])
    from_json, _ = run_json(p, [cut])
    assert len(from_csv) > 100
    assert from_csv == from_json


def test_gzip_is_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    p = conf(tmp_path, POLICY)
    packed = tmp_path / "cdrs.dat"
    packed.write_bytes(gzip.compress((CDR / "Master.csv").read_bytes()))
    jdir = tmp_path / "j"
    jdir.mkdir()
    for f in sorted((CDR / "json").iterdir())[:50]:
        (jdir / f"{f.stem}.txt").write_bytes(gzip.compress(f.read_bytes()))
    cap = tmp_path / "capture"
    cap.write_bytes(gzip.compress(CAPTURE.read_bytes()))
    assert run_json(p, [packed])[0] == run_json(p, [CDR / "Master.csv"])[0]
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    for f in sorted((CDR / "json").iterdir())[:50]:
        shutil.copy(f, plain_dir / f.name)
    assert run_json(p, [jdir])[0] == run_json(p, [plain_dir])[0]
    gz_docs = run_json(p, [cap])[0]
    assert gz_docs and [{**d, "node": "-"} for d in gz_docs] == \
        [{**d, "node": "-"} for d in run_json(p, [CAPTURE])[0]]


def test_json_output_has_the_audit_fields_plus_clause(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--json", "-c", str(conf(tmp_path, POLICY)),
                 str(CDR / "Master.csv")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    audit_fields = ["time", "account", "kind", "rule", "uuid", "node", "dry_run", "detail",
                    "limit", "observed", "origin", "event_id", "epoch"]
    assert all(list(d) == audit_fields + ["clause", "destination", "destination_class"]
               for d in lines[:-1])
    rate = next(d for d in lines if d["rule"] == "max_call_rate")
    assert rate["clause"] == "denial_of_service" and rate["observed"] == "13/10s"
    assert rate["time"].endswith("Z") and rate["limit"] == "12/10s"
    assert rate["destination"] == "9001" and rate["destination_class"] is None  # no classes
    assert lines[-1]["kind"] == "summary" and lines[-1]["calls_seen"] == 210


def test_text_output_groups_by_account_then_summarises(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    p = conf(tmp_path, "max_call_duration = 2500ms")
    assert main(["replay", "-c", str(p), str(CDR / "Master.csv")]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first == "acct10"
    assert "violation  max_call_duration (network_use)  call " in out
    assert "observed 2.5s vs limit 2.5s  CALL_REJECTED" in out
    assert "summary: 210 calls seen (590 events)" in out
    assert "calls that would have been hung up: " in out


# --------------------------------------------------------------------------- clock and order


def test_cdr_rows_in_end_order_start_at_their_start(tmp_path: Path) -> None:
    """A long call is written after the short calls that began while it was up; the replay
    still sees it start first (a file-order replay would let both short calls through)."""
    long_call = call(UUIDS[0], "acme", T0, T0, T0 + 1800)
    short = [call(UUIDS[i], "acme", T0 + 5 * i, T0 + 5 * i, T0 + 5 * i + 3) for i in (1, 2)]
    cdr = write_rows(tmp_path / "Master.csv", [long_call, *short])
    assert cdr.read_text().splitlines()[-1].count(UUIDS[0]) == 1  # written last
    docs, summary = run_json(conf(tmp_path, "max_concurrent_calls = 1"), [cdr])
    assert [(d["kind"], d["uuid"]) for d in docs] == [
        ("violation", UUIDS[1]), ("hangup", UUIDS[1]), ("violation", UUIDS[2]),
        ("hangup", UUIDS[2])]
    assert summary["calls_hung_up"] == 2


def test_external_sort_spills_and_merges_exactly() -> None:
    import random

    rnd = random.Random(1)
    calls = [(float(rnd.randrange(1000)), rnd.randrange(2), UUIDS[rnd.randrange(100)], i, None,
              None, 0.0, "", False, None) for i in range(5000)]
    for run, chunk in ((64, 7), (1000, 1), (5000, 4096), (10**6, 16)):
        assert list(sort_by_start(iter(calls), run=run, chunk=chunk)) == sorted(calls)
    by_end = sorted(calls, key=lambda c: c[0] + c[3] % 50)  # end order: runs barely overlap
    assert list(sort_by_start(iter(by_end), run=300, chunk=50)) == sorted(calls)


def test_duration_limit_fires_at_the_deadline_not_at_the_next_row(tmp_path: Path) -> None:
    cdr = write_rows(tmp_path / "Master.csv", [
        call(UUIDS[0], "acme", T0, T0 + 2, T0 + 3600),   # over: cut at answer + 60 s
        call(UUIDS[1], "acme", T0, T0 + 2, T0 + 62),     # exactly 60 s: not over the limit
        call(UUIDS[2], "other", T0 + 3000, None, T0 + 3001)])
    docs, summary = run_json(conf(tmp_path, "max_call_duration = 60s"), [cdr])
    assert [(d["kind"], d["uuid"], d["epoch"], d["observed"]) for d in docs] == [
        ("violation", UUIDS[0], T0 + 62, "1m"), ("hangup", UUIDS[0], T0 + 62, "1m")]
    assert summary["calls_hung_up"] == 1


def test_a_lock_expires_at_its_moment_on_the_recorded_clock(tmp_path: Path) -> None:
    rows = [call(UUIDS[i], "acme", T0 + i, T0 + i, T0 + 100 + i) for i in range(3)]
    rows += [call(UUIDS[10], "acme", T0 + 50, None, T0 + 51),     # locked: refused
             call(UUIDS[11], "acme", T0 + 400, None, T0 + 401)]   # after expiry: fine
    cdr = write_rows(tmp_path / "Master.csv", rows)
    p = conf(tmp_path, "max_concurrent_calls = 1\nlock_after = 2/1m\nlock_duration = 5m")
    docs, summary = run_json(p, [cdr])
    kinds = [(d["kind"], d["rule"], d["uuid"], d["epoch"]) for d in docs]
    assert ("lock", "lock_after", None, T0 + 2) in kinds
    assert ("hangup", "locked", UUIDS[10], T0 + 50) in kinds
    assert ("unlock", None, None, T0 + 2 + 300) in kinds
    assert all(u != UUIDS[11] for _, _, u, _ in kinds)
    assert summary["accounts_locked"] == ["acme"]


def test_b_legs_of_bridged_calls_do_not_count(tmp_path: Path) -> None:
    """legs = ab: the B-leg row (named by its A-leg's bleg_uuid) is not a call of its own."""
    rows = [call(UUIDS[0], "acme", T0, T0 + 1, T0 + 30, bleg=UUIDS[1]),
            call(UUIDS[1], "acme", T0, T0 + 1, T0 + 29)]
    cdr = write_rows(tmp_path / "Master.csv", rows)
    docs, summary = run_json(conf(tmp_path, "max_concurrent_calls = 1"), [cdr])
    assert docs == [] and summary["calls_seen"] == 1
    jdir = tmp_path / "json"
    jdir.mkdir()
    src = json.loads(next((CDR / "json").iterdir()).read_text())
    for uuid, direction, extra in ((UUIDS[0], "inbound", {}),
                                   (UUIDS[1], "outbound", {"originator": {}})):
        doc = json.loads(json.dumps(src))
        doc["channel_data"]["direction"] = direction
        doc["variables"].update(uuid=uuid, start_uepoch=str(int(T0 * 1e6)),
                                answer_uepoch=str(int(T0 * 1e6)),
                                end_uepoch=str(int((T0 + 30) * 1e6)))
        doc["callflow"][0]["caller_profile"].update(extra)
        (jdir / f"{uuid}.cdr.json").write_text(json.dumps(doc))
    docs, summary = run_json(conf(tmp_path, "max_concurrent_calls = 1"), [jdir])
    assert docs == [] and summary["calls_seen"] == 1


def test_a_b_leg_named_again_after_the_horizon_is_still_a_b_leg(tmp_path: Path) -> None:
    """A bleg_uuid named, used, and named again more than BLEG_HORIZON later (a reused uuid):
    forgetting the first naming does not forget the second."""
    later = T0 + 5000
    rows = [call(UUIDS[0], "acme", T0, T0 + 1, T0 + 30, bleg=UUIDS[1]),
            call(UUIDS[1], "acme", T0, T0 + 1, T0 + 29),
            call(UUIDS[2], "acme", later, later + 1, later + 30, bleg=UUIDS[1]),
            call(UUIDS[3], "acme", later + 1, later + 1, later + 20),
            call(UUIDS[1], "acme", later + 2, later + 2, later + 29)]
    cdr = write_rows(tmp_path / "Master.csv", rows)
    docs, summary = run_json(conf(tmp_path, "max_concurrent_calls = 2"), [cdr])
    assert docs == [] and summary["calls_seen"] == 3


# --------------------------------------------------------------------------- answers left out


def random_calls(seed: int, n: int = 400) -> list[tuple[float, str]]:
    """Calls of a few accounts whose answered lengths fall on both sides of 60 s and 90 s
    (the duration limits below), some never answered, some answered at once."""
    import random

    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        start = T0 + i * rnd.choice((0, 1, 2, 5))
        answer = None if rnd.random() < 0.2 else start + rnd.choice((0, 0, 1, 3))
        hold = rnd.choice((1, 5, 59, 60, 61, 89, 90, 91, 200))
        end = (answer if answer is not None else start) + hold
        uuid = f"00000000-0000-4000-8000-{seed:04d}{i:08d}"
        rows.append(call(uuid, f"acct{rnd.randrange(4)}", start, answer, end))
    return rows


@pytest.mark.parametrize("policy", [
    "max_call_duration = 60s\nmax_concurrent_calls = 3\nlock_after = 3/10m\nlock_duration = 2m",
    "max_call_duration = 90s\nmax_call_rate = 5/10s\ndry_run = true",
    "max_call_duration = 60s\nmax_short_calls = 4/1m\nshort_call = 5s",
    "max_call_duration = 60s\nmax_minutes = 3/1m\nmax_concurrent_calls = 2",
    "max_concurrent_calls = 2",
])
def test_answers_left_out_of_the_timeline_change_no_decision(tmp_path: Path,
                                                             policy: str) -> None:
    """cdr_events leaves out the CHANNEL_ANSWER of calls that end within
    Engine.answer_matters_after: every decision is the same as with every answer replayed."""
    from esl_guard.config import load_config
    from esl_guard.replay.engine import Engine, Omitted, cdr_events
    from esl_guard.replay.problems import Problems
    from esl_guard.replay.sources import discover, source_calls

    path = conf(tmp_path, policy)
    cdr = write_rows(tmp_path / "Master.csv", [r for s in range(3) for r in random_calls(s)])
    config = load_config(str(path))
    results = []
    for fold in (True, False):
        decisions: list[object] = []
        engine = Engine(config, lambda d, out=decisions: out.append((d.time, d.action)))
        src = discover([str(cdr)], EXAMPLE_COLUMNS)[0]
        omitted = Omitted()
        calls = sort_by_start(source_calls(src, EXAMPLE_COLUMNS, "accountcode", Problems()))
        engine.run(cdr_events(calls, engine.answer_matters_after if fold else -math.inf,
                              omitted))
        engine.finish()
        results.append((decisions, engine.stats.events + omitted.answers, omitted.answers))
    (folded, events, left_out), (replayed, all_events, none) = results
    assert folded == replayed and events == all_events and none == 0
    assert len(replayed) > 0
    if "max_short_calls" in policy or "max_minutes" in policy:
        assert left_out == 0  # they read every answer time
    else:
        assert left_out > 0


# --------------------------------------------------------------------------- compare


def fates(docs: list[dict[str, object]]) -> dict[object, object]:
    out: dict[object, object] = {}
    for d in docs:
        if d["kind"] == "hangup":
            out.setdefault(d["uuid"], (d["rule"], d["dry_run"]))
    return out


def test_compare_lists_exactly_the_calls_whose_fate_differs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = conf(tmp_path, POLICY, "a.conf")
    b = conf(tmp_path, POLICY.replace("max_concurrent_calls = 4", "max_concurrent_calls = 3")
             .replace("12/10s", "10/10s"), "b.conf")
    fa, fb = fates(run_json(a, [CDR / "Master.csv"])[0]), fates(run_json(b, [CDR / "Master.csv"])[0])
    expected = {u for u in fa.keys() | fb.keys() if fa.get(u) != fb.get(u)}
    assert expected  # the tighter policy changes something
    assert main(["replay", "--json", "-c", str(a), "--compare", str(b),
                 str(CDR / "Master.csv")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    listed = {x["uuid"] for x in lines if x["kind"] == "call"}
    assert listed == expected
    summary = lines[-1]
    assert summary["calls_differ"] == len(expected)
    assert summary["hung_up_by_b_only"] == len([u for u in expected if u not in fa])
    assert main(["replay", "-c", str(a), "--compare", str(b), str(CDR / "Master.csv")]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"--- a: {a}\n+++ b: {b}\n")
    assert sum(1 for line in text.splitlines() if line[:7] in ("+ call ", "- call ", "~ call ")) \
        == len(expected)


def test_compare_of_a_policy_with_itself_is_empty(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a = conf(tmp_path, POLICY)
    assert main(["replay", "-c", str(a), "--compare", str(a), str(CAPTURE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("summary: 0 call(s) with a different fate") and len(out) == 3


# --------------------------------------------------------------------------- bad input


def test_bad_rows_are_counted_with_file_and_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = row(UUIDS[0], "acme", T0, T0, T0 + 10)
    lines = [good,
             row(UUIDS[1], "ac\"me", T0, T0, T0 + 10),                    # 2: quote in a value
             row("not-a-uuid", "acme", T0, T0, T0 + 10),                  # 3
             row(UUIDS[3], "acme", T0, T0, T0 + 10).replace(":40\"", ":7x\"", 1),  # 4: stamp
             row(UUIDS[4], "acme", T0 + 10, T0 + 10, T0),                 # 5: ends first
             row(UUIDS[5], "acme", T0, T0, T0 + 10)]
    cdr = tmp_path / "Master.csv"
    cdr.write_text("".join(lines))
    assert main(["replay", "-c", str(conf(tmp_path, "max_concurrent_calls = 5")), str(cdr)]) == 0
    out, err = capsys.readouterr()
    assert "summary: 2 calls seen" in out and "bad rows/events skipped: 4" in out
    err_lines = err.splitlines()
    assert err_lines[0] == f"esl-guard replay: 4 bad row(s)/event(s) skipped: {cdr}: 4"
    assert [x.split(": ")[1] for x in err_lines[1:]] == [f"{cdr}:{n}" for n in (2, 3, 4, 5)]
    assert "Traceback" not in err


def test_bad_json_cdrs_and_a_truncated_capture_are_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jdir = tmp_path / "json"
    jdir.mkdir()
    shutil.copy(next((CDR / "json").iterdir()), jdir / "good.cdr.json")
    (jdir / "broken.cdr.json").write_text('{"variables": {"uuid": "x"}}\n{not json\n')
    cut = tmp_path / "cut.bin"
    cut.write_bytes(CAPTURE.read_bytes()[:200_000])
    assert main(["replay", "-c", str(conf(tmp_path, "")), str(jdir), str(cut)]) == 0
    err = capsys.readouterr().err
    assert f"{jdir}/broken.cdr.json:1: uuid 'x' is not a channel UUID" in err
    assert f"{jdir}/broken.cdr.json:2: not valid JSON" in err
    assert f"{cut}: the capture ends inside a frame" in err


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01\x02garbage\xff" * 10, "not a CDR CSV (mod_cdr_csv), JSON CDR (mod_json_cdr) or "
                                      "raw ESL capture"),
    (b"", "empty file"),
    (b'"a","b","c"\n"d","e","f"\n', "a CSV row of 3 fields, but the CDR template has 15"),
    (gzip.compress(b"just some words\n"), "not a CDR CSV"),
    (gzip.compress(b"x" * 100)[:-12], "cannot read"),
    (b"Content-Type: auth/request\n\nContent-Length: 99999999999\n\n", "not a readable ESL"),
])
def test_a_file_of_no_known_format_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    assert main(["replay", "-c", str(conf(tmp_path, "")), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert message in err and err.startswith("esl-guard replay: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_source_unknown_file_in_a_directory_and_bad_conf_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = conf(tmp_path, "")
    assert main(["replay", "-c", str(p), str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: cannot read: No such file or directory" in capsys.readouterr().err
    jdir = tmp_path / "cdrs"
    jdir.mkdir()
    shutil.copy(next((CDR / "json").iterdir()), jdir)
    (jdir / "notes.bin").write_bytes(b"\x00\x00binary")
    assert main(["replay", "-c", str(p), str(jdir)]) == 2
    assert "notes.bin: not a CDR CSV" in capsys.readouterr().err
    bad_conf = conf(tmp_path, "max_concurent_calls = 3", "bad.conf")
    assert main(["replay", "-c", str(bad_conf), str(CDR / "Master.csv")]) == 2
    err = capsys.readouterr().err
    assert "max_concurent_calls" in err and "Traceback" not in err


def test_cdr_columns_for_another_template(tmp_path: Path) -> None:
    cdr = tmp_path / "custom.csv"
    cdr.write_text("".join(
        f'"{u}","acme","{int(T0 + i)}","{int(T0 + i)}","{int(T0 + 100)}"\n'
        for i, u in enumerate(UUIDS[:3])))
    p = conf(tmp_path, "max_concurrent_calls = 2")
    docs, _ = run_json(p, [cdr], "uuid,accountcode,start_epoch,answer_epoch,end_epoch")
    assert [(d["kind"], d["uuid"]) for d in docs] == [("violation", UUIDS[2]),
                                                        ("hangup", UUIDS[2])]
    template = '"${uuid}","${accountcode}","${start_epoch}","${answer_epoch}","${end_epoch}"'
    assert run_json(p, [cdr], template)[0] == docs  # the template itself is accepted too
    assert main(["replay", "-c", str(p), "--cdr-columns", "uuid,accountcode", str(cdr)]) == 2


def test_the_readme_example_is_the_real_output(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    monkeypatch.chdir(CDR)
    for command in ("esl-guard replay -c policy.conf Master.csv",
                    "esl-guard replay -c policy.conf --compare policy-strict.conf Master.csv"):
        shown = readme.split(f"$ TZ=UTC {command}\n", 1)[1].split("```", 1)[0].splitlines()
        assert main(command.split()[1:]) == 0
        out = capsys.readouterr().out.splitlines()
        if "..." in shown:
            cut = shown.index("...")
            assert out[:cut] == shown[:cut] and out[-1] == shown[-1]
        else:
            assert out == shown
