"""Event decoding against the real captures: who the account is, which leg counts."""
from __future__ import annotations

from pathlib import Path

from esl_guard.events import CALL_EVENTS, EventDecoder, event_name
from esl_guard.frames import FrameReader
from esl_guard.model import ActionKind, Limits
from esl_guard.tracker import Tracker

FIXTURES = Path(__file__).parent / "fixtures" / "esl"


def call_events(name: str, variable: str = "accountcode") -> list:
    dec = EventDecoder("fs1", variable)
    out = []
    for f in FrameReader().feed((FIXTURES / name).read_bytes()):
        if f.content_type != "text/event-plain":
            continue
        ev_name = event_name(f.body)
        if ev_name in CALL_EVENTS:
            out.append(dec.decode(f.body, ev_name))
    return out


def test_account_arrives_on_answer_for_dialplan_set_accounts() -> None:
    events = call_events("plain_calls.bin")
    creates = [e for e in events if e.name == "CHANNEL_CREATE"]
    answers = [e for e in events if e.name == "CHANNEL_ANSWER"]
    assert {e.account for e in creates} == {None, "1000"}  # only the digest user has it
    assert {e.account for e in answers} == {"acct1", "acct2", "acct3", "1000"}
    rejected = [e for e in events if e.name == "CHANNEL_HANGUP" and e.account == "acct3"]
    assert rejected, "the rejected call carries the account from HANGUP on"


def test_every_event_has_a_uuid_and_no_b_legs_in_plain_calls() -> None:
    events = call_events("plain_calls.bin")
    assert all(e.uuid and len(e.uuid) == 36 for e in events)
    assert not any(e.b_leg for e in events)
    assert len({e.uuid for e in events}) == 16


def test_bridged_b_legs_are_recognised_on_every_event() -> None:
    events = call_events("plain_bridged.bin")
    b_uuids = {e.uuid for e in events if e.b_leg}
    a_uuids = {e.uuid for e in events if not e.b_leg}
    assert len(b_uuids) == 5 and len(a_uuids) == 5
    assert not b_uuids & a_uuids
    for e in events:
        if e.uuid in b_uuids:
            assert e.b_leg and e.other_leg in a_uuids and e.account is None


def test_loopback_legs_are_not_calls_of_their_own() -> None:
    """One call bridged through loopback/9001 (plain_loopback.bin): the caller's channel is
    the call; loopback-a is outbound with Other-Leg-Unique-ID, and loopback-b is inbound with
    the account but carries variable_loopback_leg: B; both belong to the caller's call."""
    events = call_events("plain_loopback.bin")
    creates = [e for e in events if e.name == "CHANNEL_CREATE"]
    assert len(creates) == 3
    calls = {e.uuid for e in events if not e.b_leg}
    assert len(calls) == 1
    (call,) = calls
    legs = {e.uuid for e in events if e.b_leg}
    assert len(legs) == 2 and not legs & calls
    for e in events:
        if e.uuid in legs:
            assert e.other_leg == call, e
    # loopback-b carries the account from its CHANNEL_CREATE on: counted, it would be a
    # second call of acct1
    assert any(e.uuid in legs and e.account == "acct1" and e.name == "CHANNEL_CREATE"
               for e in events)


def test_a_loopback_call_is_one_call_for_the_tracker() -> None:
    """The real event stream of the loopback call through the tracker, limit 1: the call is
    counted once, never hung up, and nothing is left counted after its end."""
    tr = Tracker(lambda account: Limits(max_concurrent_calls=1), lambda: 1_800_000_000.0)
    peak, actions = 0, []
    for i, e in enumerate(call_events("plain_loopback.bin")):
        actions += tr.on_event(e, float(i))
        peak = max(peak, tr.active("acct1"))
    assert peak == 1
    assert not [a for a in actions if a.kind is ActionKind.HANGUP], actions
    assert tr.active("acct1") == 0


def test_other_account_variable() -> None:
    events = call_events("plain_calls.bin", variable="sip_h_X-Account")
    creates = [e for e in events if e.name == "CHANNEL_CREATE"]
    assert {e.account for e in creates} == {None, "acct1", "acct2", "acct3"}


def test_hostile_values_are_url_decoded_once_and_not_confused_with_other_headers() -> None:
    body = (b"Event-Name: CHANNEL_CREATE\nOther-Leg-Unique-ID-Fake: x\n"
            b"Unique-ID: 6e3cfff3-8692-405e-af1c-91f7ec67ef18\n"
            b"variable_accountcode: x%0A%0Abgapi%20system%20touch%20%2Ftmp%2Fp%0A%0A\n\n")
    ev = EventDecoder("n", "accountcode").decode(body, "CHANNEL_CREATE")
    assert ev is not None
    assert ev.account == "x\n\nbgapi system touch /tmp/p\n\n"
    assert ev.other_leg is None and not ev.b_leg


def test_headers_in_an_inner_body_are_ignored() -> None:
    body = (b"Event-Name: CHANNEL_ANSWER\nUnique-ID: 6e3cfff3-8692-405e-af1c-91f7ec67ef18\n"
            b"Content-Length: 40\n\nvariable_accountcode: evil\nUnique-ID: x\n")
    ev = EventDecoder("n").decode(body, "CHANNEL_ANSWER")
    assert ev is not None and ev.account is None
    assert ev.uuid == "6e3cfff3-8692-405e-af1c-91f7ec67ef18"


def test_missing_unique_id_gives_none() -> None:
    assert EventDecoder("n").decode(b"Event-Name: CHANNEL_CREATE\n\n", "CHANNEL_CREATE") is None
