"""Parsing `show channels as json` answers, from the real captures."""
from __future__ import annotations

from pathlib import Path

import pytest

from esl_guard.frames import FrameReader
from esl_guard.resync import ADOPT_AFTER, ResyncError, not_too_new, parse_channels
from esl_guard.tracker import ChannelRow

FIXTURES = Path(__file__).parent / "fixtures" / "esl"


def api_bodies(name: str) -> list[str]:
    frames = FrameReader().feed((FIXTURES / name).read_bytes())
    return [f.body.decode() for f in frames if f.content_type == "api/response"]


def test_empty_answer_is_a_complete_empty_list() -> None:
    assert parse_channels('{"row_count": 0}\n', 0.0) == []


def test_bridged_capture_gives_two_calls_and_two_b_legs() -> None:
    body = next(b for b in api_bodies("plain_bridged.bin") if '"row_count":4' in b)
    rows = parse_channels(body, 1795630850.0)
    assert len(rows) == 4
    a_legs = [r for r in rows if not r.b_leg]
    assert len(a_legs) == 2 and {r.account for r in a_legs} == {"acct1"}
    assert all(r.answered for r in rows)
    assert all(0 <= r.age <= 10 for r in rows)


def test_loopback_capture_gives_one_call_and_two_legs_that_are_not_calls() -> None:
    """A call bridged through loopback/: the caller's channel, loopback-a (outbound, call_uuid
    = the caller) and loopback-b (inbound, with the account, no call_uuid): one call."""
    body = next(b for b in api_bodies("plain_loopback.bin") if '"row_count":3' in b)
    rows = parse_channels(body, 1795630850.0)
    assert len(rows) == 3 and all(r.answered for r in rows)
    calls = [r for r in rows if not r.b_leg]
    assert len(calls) == 1 and calls[0].account == "acct1", rows
    assert sum(1 for r in rows if r.b_leg and r.account == "acct1") == 1  # loopback-b


def test_other_account_variable_leaves_the_account_to_a_lookup() -> None:
    body = next(b for b in api_bodies("plain_bridged.bin") if '"row_count":4' in b)
    assert {r.account for r in parse_channels(body, 0.0, "sip_h_X-Account")} == {None}


@pytest.mark.parametrize("body", [
    "-ERR simulated failure\n",
    '{"row_count": 2, "rows": [{"uuid": "x"}]}',
    '{"row_count":1,"rows":[{"uuid":"6e3cfff3-8692-405e-af1c-91f7ec67ef18"',
    "[]",
    "",
])
def test_partial_or_failed_answers_raise(body: str) -> None:
    with pytest.raises(ResyncError):
        parse_channels(body, 0.0)


def test_rows_with_bad_uuids_or_hanging_up_are_skipped() -> None:
    body = ('{"row_count":3,"rows":[{"uuid":"bad uuid","accountcode":"a"},'
            '{"uuid":"6e3cfff3-8692-405e-af1c-91f7ec67ef18","accountcode":"a","callstate":"HANGUP"},'
            '{"uuid":"6e3cfff3-8692-405e-af1c-91f7ec67ef19","accountcode":"a","callstate":"RINGING",'
            '"created_epoch":"100"}]}')
    rows = parse_channels(body, 160.0)
    assert [(r.uuid[-2:], r.answered, r.age) for r in rows] == [("19", False, 60.0)]


def _row(i: int) -> dict[str, str]:
    return {"uuid": f"6e3cfff3-8692-405e-af1c-{i:012d}", "direction": "inbound",
            "created_epoch": "100", "callstate": "ACTIVE", "accountcode": f"a{i % 7}",
            "name": 'sofia/external/x"y,z]}{@127.0.0.1', "call_uuid": ""}


def test_a_big_answer_is_parsed_in_chunks_exactly_like_json_loads() -> None:
    import json

    from esl_guard.resync import CHUNK

    rows = [_row(i) for i in range(10 * CHUNK + 3)]
    body = json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))
    pauses = []
    got = parse_channels(body, 160.0, pause=lambda: pauses.append(1))
    assert [(r.uuid, r.account, r.answered, r.age) for r in got] == \
        [(r["uuid"], r["accountcode"], True, 60.0) for r in rows]
    assert len(pauses) >= 10  # the caller's hub ran between chunks
    spaced = json.dumps({"rows": rows, "row_count": len(rows)}, indent=2)  # any key order
    assert parse_channels(spaced, 160.0) == got


def test_every_capture_parses_as_json_loads_does() -> None:
    import json

    bodies = [b for name in ("plain_bridged.bin", "api_replies.bin", "plain_calls.bin")
              for b in api_bodies(name) if b.lstrip().startswith("{")]
    assert len(bodies) >= 4
    for body in bodies:
        doc = json.loads(body)
        assert len(parse_channels(body, 1795630850.0, pause=lambda: None)) <= doc["row_count"]


@pytest.mark.parametrize("body", [
    '{"row_count":0}{}',                 # trailing data
    '{"row_count":0,}',                  # trailing comma
    '{"row_count":1,"rows":[{}]',        # cut short
    '{"row_count":1,"rows":[{} {}]}',    # missing comma
    '{"row_count" 0}',                   # missing colon
    '{"row_count":true}',                # not a number
    '{1:2}',                             # not a key
])
def test_malformed_json_is_a_resync_error(body: str) -> None:
    with pytest.raises(ResyncError):
        parse_channels(body, 0.0, pause=lambda: None)


@pytest.mark.parametrize("failures, interval, delay", [
    (1, 60.0, 2.0), (2, 60.0, 4.0), (3, 60.0, 8.0), (6, 60.0, 60.0), (40, 60.0, 60.0),
    (1, 1.0, 1.0),
])
def test_a_failed_reconciliation_is_retried_within_seconds_then_backs_off(
        failures: int, interval: float, delay: float) -> None:
    from esl_guard.snapshot import retry_delay

    assert retry_delay(failures, interval) == delay


def test_a_reconciliation_leaves_a_brand_new_unknown_call_to_its_events() -> None:
    """The answer can overtake the new call's CHANNEL_CREATE: a call adopted from it would never
    meet the policy.  Known calls are always applied; unknown ones once they are old enough."""
    known = {"00000000-0000-4000-8000-000000000001"}
    rows = [ChannelRow("00000000-0000-4000-8000-000000000001", "acme", False, False, 0.0),
            ChannelRow("00000000-0000-4000-8000-000000000002", "acme", False, False, 1.0),
            ChannelRow("00000000-0000-4000-8000-000000000003", "acme", False, True, ADOPT_AFTER)]
    assert [r.uuid[-1] for r in not_too_new(rows, known)] == ["1", "3"]
