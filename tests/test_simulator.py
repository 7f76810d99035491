"""The FreeSWITCH simulator against the real bytes captured from FreeSWITCH 1.10.12.

Every test talks to the simulator over real TCP (127.0.0.1, port 0) with gevent sockets and
waits with deadlines, never with fixed sleeps.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
from gevent import socket as gsocket
from hypothesis import given, settings
from hypothesis import strategies as st

from esl_guard.simulator import FakeFreeSWITCH, fs_url_decode, fs_url_encode, render_event
from esl_guard.simulator.wire import iter_frames, parse_plain_body, plain_to_json

FIXTURES = Path(__file__).parent / "fixtures" / "esl"
TIMEOUT = 5.0

Frame = tuple[dict[str, str], bytes]


# ---- helpers -------------------------------------------------------------------------------

def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sent_commands(name: str) -> list[str]:
    """The commands of a ``.sent.tsv`` capture, without their trailing ``\\n\\n``."""
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        out.append(json.loads(line.split("\t", 2)[2])[:-2])
    return out


def fixture_events(name: str) -> list[list[tuple[str, str]]]:
    return [parse_plain_body(body) for headers, body in iter_frames(fixture(name))
            if headers.get("Content-Type") == "text/event-plain"]


def first_event(name: str, pred: Callable[[dict[str, str]], bool]) -> list[tuple[str, str]]:
    return next(ev for ev in fixture_events(name) if pred(dict(ev)))


def fields(body: bytes) -> dict[str, str]:
    """Decoded headers of a plain event body (first occurrence wins)."""
    out: dict[str, str] = {}
    for key, value in parse_plain_body(body):
        out.setdefault(key, fs_url_decode(value))
    return out


class Client:
    """A minimal ESL client on a gevent socket that keeps every received byte."""

    def __init__(self, port: int) -> None:
        self.sock = gsocket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.raw = bytearray()
        self._pos = 0
        self.eof = False

    def send(self, command: str) -> None:
        self.sock.sendall(command.encode() + b"\n\n")

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame before the deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except gsocket.timeout as exc:
            raise TimeoutError("no frame before the deadline") from exc
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise EOFError
        self.raw += data

    def frame(self, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            got = next(iter_frames(bytes(self.raw[self._pos:])), None)
            if got is not None:
                headers, body = got
                end = self.raw.index(b"\n\n", self._pos) + 2 + len(body)
                self._pos = end
                return headers, body
            self._fill(deadline)

    def frames(self, n: int) -> list[Frame]:
        return [self.frame() for _ in range(n)]

    def event(self, name: str | None = None) -> dict[str, str]:
        """Next event (skipping nothing: a different event fails the test)."""
        headers, body = self.frame()
        assert headers.get("Content-Type") == "text/event-plain", headers
        ev = fields(body)
        if name is not None:
            assert ev["Event-Name"] == name, ev["Event-Name"]
        return ev

    def until_eof(self, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            pass
        return bytes(self.raw)

    def login(self, password: str = "ClueCon", events: str | None = None) -> Client:
        assert self.frame() == ({"Content-Type": "auth/request"}, b"")
        self.send(f"auth {password}")
        assert self.frame()[0]["Reply-Text"] == "+OK accepted"
        if events:
            self.send(f"event plain {events}")
            assert self.frame()[0]["Reply-Text"] == "+OK event listener enabled plain"
        return self

    def api(self, command: str) -> bytes:
        self.send(f"api {command}")
        headers, body = self.frame()
        assert headers["Content-Type"] == "api/response"
        assert int(headers["Content-Length"]) == len(body)
        return body

    def wait_raw(self, pred: Callable[[bytes], bool], timeout: float = TIMEOUT) -> bytes:
        """Read until ``pred(all bytes received so far)`` holds (for partial frames)."""
        deadline = time.monotonic() + timeout
        while not pred(bytes(self.raw)):
            self._fill(deadline)
        return bytes(self.raw)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fs() -> Iterator[FakeFreeSWITCH]:
    sim = FakeFreeSWITCH(password="ClueCon").start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def connect(fs: FakeFreeSWITCH) -> Iterator[Callable[[], Client]]:
    clients: list[Client] = []

    def make() -> Client:
        c = Client(fs.port)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# ---- byte-for-byte against the captures ------------------------------------------------------

def test_auth_fail_is_byte_identical_to_the_capture(fs: FakeFreeSWITCH, connect) -> None:
    c = connect()
    for command in sent_commands("auth_fail.sent.tsv"):
        c.send(command)
    assert c.until_eof() == fixture("auth_fail.bin")
    assert fs.commands == ["auth WrongPassword"]
    assert fs.connections == 0


def test_commands_before_auth_are_byte_identical(fs: FakeFreeSWITCH, connect) -> None:
    c = connect()
    for command in sent_commands("noauth_command.sent.tsv"):
        c.send(command)
    assert c.until_eof() == fixture("noauth_command.bin")
    assert fs.commands == ["api status", "event plain ALL", "exit"]


def test_auth_ok_then_exit(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login()
    assert fs.wait_for(lambda: fs.connections == 1)
    start = len(c.raw)
    c.send("exit")
    real = fixture("plain_calls.bin")
    exit_offset = 540325  # plain_calls.sent.tsv: bytes received when `exit` was sent
    assert c.until_eof()[start:] == real[exit_offset:]
    assert bytes(c.raw[:start]) == real[:28] + b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
    assert fs.wait_for(lambda: fs.connections == 0)


def test_shutdown_seen_by_unsubscribed_client_and_issuer(fs: FakeFreeSWITCH, connect) -> None:
    idle = connect().login()
    issuer = connect().login()
    assert fs.wait_for(lambda: fs.connections == 2)
    issuer.send("api shutdown")
    assert issuer.until_eof() == fixture("shutdown_issuer.bin")
    assert idle.until_eof() == fixture("shutdown_nosub.bin")


def test_api_reply_shapes_match_the_capture(fs: FakeFreeSWITCH, connect) -> None:
    real = [body for headers, body in iter_frames(fixture("api_replies.bin"))
            if headers.get("Content-Type") == "api/response"]
    c = connect().login()
    assert c.api("show channels as json") == real[1] == b'{"row_count": 0}\n'
    assert c.api("uuid_kill 00000000-0000-4000-8000-000000000000") == real[9]
    assert c.api("uuid_kill") == real[11] == b"-USAGE: <uuid> [cause]\n"
    assert c.api("hash insert/guard/locked_acct1/1") == real[12] == b"+OK\n"
    assert c.api("hash select/guard/locked_acct1") == real[13] == b"1"
    assert c.api("hash select/guard/not_there") == real[14] == b"-ERR no reply\n"
    assert c.api("hash delete/guard/locked_acct1") == real[15]
    assert c.api("no_such_command") == real[17] == b"-ERR no_such_command Command not found!\n"
    c.send("bogus_command")
    assert c.frame() == ({"Content-Type": "command/reply", "Reply-Text": "-ERR command not found"}, b"")
    assert c.api("show channels count") == b"\n0 total.\n"
    assert real[16] == b"-ERR no reply\n" and real[18] == b"\n1 total.\n"
    status = c.api("status").decode()
    assert status.startswith("UP 0 years, 0 days, ") and "session(s) since startup" in status


def test_hash_dump_answers_as_the_real_switch(fs: FakeFreeSWITCH, connect) -> None:
    """Every mod_hash command of ``hash_dump.bin`` (real FreeSWITCH 1.10.12), replayed: the same
    answers (a dump's line order is the hash table's, so dumps compare as sets of lines)."""
    real = [body for headers, body in iter_frames(fixture("hash_dump.bin"))
            if headers.get("Content-Type") == "api/response"]
    commands = [c[len("api "):] for c in sent_commands("hash_dump.sent.tsv") if c.startswith("api ")]
    c = connect().login()
    hash_commands = [(cmd, body) for cmd, body in zip(commands, real, strict=True)
                     if cmd.startswith("hash")]
    assert len(hash_commands) == 10
    for cmd, body in hash_commands:
        answer = c.api(cmd)
        if cmd.startswith("hash_dump"):
            assert sorted(answer.splitlines()) == sorted(body.splitlines()), cmd
            assert len(answer) == len(body)
        else:
            assert answer == body, cmd
    assert real[5] == (b"D/esl_guard_bob/1764400000\nD/esl_guard_acme/forever\n"
                       b"D/esl_guard_carol.x@y/until_1764400000\n")


# ---- show channels / show calls ----------------------------------------------------------------

def _fixture_rows(name: str, marker: bytes, nth: int = 0) -> list[dict[str, str]]:
    bodies = [body for headers, body in iter_frames(fixture(name))
              if headers.get("Content-Type") == "api/response" and body.startswith(marker)]
    return json.loads(bodies[nth])["rows"]


def test_show_channels_json_rows_like_the_capture(fs: FakeFreeSWITCH, connect) -> None:
    real = _fixture_rows("api_replies.bin", b'{"row_count":1')[0]
    c = connect().login()
    uuid = fs.create_call("acct1", account_on="answer", dest="9003")
    ringing = json.loads(c.api("show channels as json"))
    assert ringing["row_count"] == 1
    assert ringing["rows"][0]["accountcode"] == "" and ringing["rows"][0]["callstate"] != "ACTIVE"
    fs.answer(uuid)
    body = c.api("show channels as json")
    assert not body.endswith(b"\n") and body.startswith(b'{"row_count":1,"rows":[{')
    row = json.loads(body)["rows"][0]
    assert list(row) == list(real)
    assert all(isinstance(v, str) for v in row.values())
    assert (row["uuid"], row["accountcode"], row["callstate"], row["dest"], row["call_uuid"]) == (
        uuid, "acct1", "ACTIVE", "9003", "")
    assert row["name"] == real["name"].replace("15700", row["name"].rsplit(":", 1)[1])


def test_show_calls_json_one_row_per_bridged_call(fs: FakeFreeSWITCH, connect) -> None:
    real_calls = _fixture_rows("plain_bridged.bin", b'{"row_count":2')
    real_channels = _fixture_rows("plain_bridged.bin", b'{"row_count":4')
    unbridged_real = _fixture_rows("api_replies.bin", b'{"row_count":1', nth=1)[0]
    c = connect().login()
    a1 = fs.create_call("acct1", account_on="answer", dest="9005")
    b1 = fs.bridge(a1)
    a2 = fs.create_call("acct2", account_on="answer")
    fs.answer(a2)
    calls = json.loads(c.api("show calls as json"))
    assert calls["row_count"] == 2
    bridged, plain = calls["rows"]
    assert list(bridged) == list(real_calls[0]) == list(unbridged_real)
    assert (bridged["uuid"], bridged["b_uuid"], bridged["call_uuid"]) == (a1, b1, a1)
    assert (bridged["accountcode"], bridged["b_accountcode"], bridged["b_direction"]) == (
        "acct1", "", "outbound")
    assert bridged["call_created_epoch"] == bridged["created_epoch"]
    assert plain["b_uuid"] == plain["call_uuid"] == plain["call_created_epoch"] == ""
    channels = json.loads(c.api("show channels as json"))
    assert channels["row_count"] == 3
    assert [list(r) for r in channels["rows"]] == [list(real_channels[0])] * 3
    b_row = next(r for r in channels["rows"] if r["uuid"] == b1)
    assert (b_row["direction"], b_row["dest"], b_row["accountcode"], b_row["call_uuid"]) == (
        "outbound", "9999", "", a1)
    assert c.api("show calls count") == b"\n2 total.\n"


# ---- uuid_kill -------------------------------------------------------------------------------

def test_uuid_kill_live_call_replies_first_then_ends_it(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY")
    uuid = fs.create_call("acme", account_on="answer")
    fs.answer(uuid)
    c.send(f"api uuid_kill {uuid} CALL_REJECTED")
    assert c.frame() == ({"Content-Type": "api/response", "Content-Length": "4"}, b"+OK\n")
    for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
        ev = c.event(name)
        assert (ev["Unique-ID"], ev["Hangup-Cause"], ev["variable_accountcode"]) == (
            uuid, "CALL_REJECTED", "acme")
    assert ev["variable_hangup_cause_q850"] == "21"
    assert fs.kills == [(uuid, "CALL_REJECTED")]
    assert fs.calls() == {}
    assert c.api(f"uuid_kill {uuid}") == b"-ERR No such channel!\n"
    assert c.api(f"uuid_kill {uuid} CALL_REJECTED") == b"-ERR No such channel!\n"
    assert fs.kills == [(uuid, "CALL_REJECTED")]


def test_uuid_kill_default_cause_and_bridged_b_leg(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_HANGUP")
    a = fs.create_call("acme", account_on="answer", dest="9005")
    b = fs.bridge(a)
    assert c.api(f"uuid_kill {a}") == b"+OK\n"
    first, second = c.event("CHANNEL_HANGUP"), c.event("CHANNEL_HANGUP")
    assert (first["Unique-ID"], first["Hangup-Cause"]) == (a, "NORMAL_CLEARING")
    assert (second["Unique-ID"], second["Hangup-Cause"], second["Other-Leg-Unique-ID"]) == (
        b, "NORMAL_CLEARING", a)
    assert fs.kills == [(a, "NORMAL_CLEARING")] and fs.calls() == {}


# ---- bgapi -----------------------------------------------------------------------------------

def test_bgapi_background_job_framing_equals_the_capture(fs: FakeFreeSWITCH, connect) -> None:
    real = [(h, b) for h, b in iter_frames(fixture("api_replies.bin"))]
    real_reply = next(h for h, b in real if h.get("Reply-Text", "").startswith("+OK Job-UUID"))
    real_jobs = [b for h, b in real if b.startswith(b"Event-Name: BACKGROUND_JOB")]
    c = connect().login(events="BACKGROUND_JOB CHANNEL_HANGUP_COMPLETE")
    c.send("bgapi uuid_kill 00000000-0000-4000-8000-000000000000")
    headers, body = c.frame()
    assert list(headers) == list(real_reply)
    job = headers["Job-UUID"]
    assert headers["Reply-Text"] == f"+OK Job-UUID: {job}"
    assert (f"Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n"
            .encode() in c.raw)
    headers, body = c.frame()
    assert headers == {"Content-Length": str(len(body)), "Content-Type": "text/event-plain"}
    assert [k for k, _ in parse_plain_body(body)] == [k for k, _ in parse_plain_body(real_jobs[2])]
    assert body.endswith(b"\nJob-Command: uuid_kill\nJob-Command-Arg: 00000000-0000-4000-8000-000000000000"
                         b"\nContent-Length: 22\n\n-ERR No such channel!\n")
    assert real_jobs[2].endswith(body[body.index(b"\nJob-Command:"):])
    assert fields(body)["Job-UUID"] == job
    assert abs(len(body) - len(real_jobs[2])) < 30


def test_bgapi_kill_order_like_the_capture(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="BACKGROUND_JOB CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE")
    uuid = fs.create_call("acct1", account_on="answer")
    fs.answer(uuid)
    c.send(f"bgapi uuid_kill {uuid} CALL_REJECTED")
    assert c.frame()[0]["Reply-Text"].startswith("+OK Job-UUID: ")
    assert c.event("CHANNEL_HANGUP")["Hangup-Cause"] == "CALL_REJECTED"
    headers, body = c.frame()
    assert body.endswith(b"Job-Command-Arg: " + uuid.encode()
                         + b"%20CALL_REJECTED\nContent-Length: 4\n\n+OK\n")
    assert c.event("CHANNEL_HANGUP_COMPLETE")["Unique-ID"] == uuid
    assert fs.kills == [(uuid, "CALL_REJECTED")]


def test_bgapi_status_and_custom_job_uuid(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="BACKGROUND_JOB")
    c.sock.sendall(b"bgapi status\nJob-UUID: my-job-1\n\n")
    assert c.frame()[0]["Job-UUID"] == "my-job-1"
    ev = fields(c.frame()[1])
    assert (ev["Job-UUID"], ev["Job-Command"]) == ("my-job-1", "status")
    assert "Job-Command-Arg" not in ev
    assert fs.commands[-1] == "bgapi status\nJob-UUID: my-job-1"


# ---- hash ------------------------------------------------------------------------------------

def test_hash_insert_select_delete(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login()
    assert c.api("hash insert/esl_guard/acme/locked until 12:00") == b"+OK\n"
    assert fs.hash == {"esl_guard": {"acme": "locked until 12:00"}}
    assert c.api("hash select/esl_guard/acme") == b"locked until 12:00"
    fs.hash["esl_guard"]["other"] = "1"
    assert c.api("hash select/esl_guard/other") == b"1"
    assert c.api("hash delete/esl_guard/acme") == b"+OK\n"
    assert c.api("hash delete/esl_guard/acme") == b"-ERR Not found\n"
    assert c.api("hash select/esl_guard/acme") == b"-ERR no reply\n"
    assert c.api("hash bogus") .startswith(b"-ERR Usage: hash ")
    assert fs.hash == {"esl_guard": {"other": "1"}}


# ---- subscriptions ---------------------------------------------------------------------------

def test_only_subscribed_events_are_sent(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_HANGUP_COMPLETE")
    c.send("event plain HEARTBEAT")  # accumulative, like FreeSWITCH
    assert c.frame()[0]["Reply-Text"] == "+OK event listener enabled plain"
    quiet = connect().login()
    uuid = fs.create_call("acme")
    fs.answer(uuid)
    fs.hangup(uuid)
    fs.heartbeat()
    assert c.event("CHANNEL_HANGUP_COMPLETE")["Unique-ID"] == uuid
    assert c.event("HEARTBEAT")
    assert quiet.api("status").startswith(b"UP ")  # nothing arrived before the api reply
    c.send("nixevent HEARTBEAT")
    assert c.frame()[0]["Reply-Text"] == "+OK events nixed"
    fs.heartbeat()
    fs.hangup(fs.create_call("acme"))
    assert c.event("CHANNEL_HANGUP_COMPLETE")["Hangup-Cause"] == "NORMAL_CLEARING"
    c.send("noevents")
    assert c.frame()[0]["Reply-Text"] == "+OK no longer listening for events"
    fs.hangup(fs.create_call("acme"))
    assert c.api("status").startswith(b"UP ")


def test_filter_by_unique_id(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="ALL")
    mine = fs.create_call("acme", uuid="11111111-2222-4333-8444-555555555555")
    c.event("CHANNEL_CREATE")
    c.send(f"filter Unique-ID {mine}")
    assert c.frame()[0]["Reply-Text"] == f"+OK filter added. [Unique-ID]=[{mine}]"
    other = fs.create_call("acme")
    fs.answer(other)
    fs.answer(mine)
    assert c.event("CHANNEL_ANSWER")["Unique-ID"] == mine


def test_event_sequence_strictly_increases(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="ALL")
    uuids = [fs.create_call(f"acct{i}", account_on="answer") for i in range(3)]
    for u in uuids:
        fs.answer(u)
    fs.bridge(uuids[0])
    for u in uuids:
        fs.hangup(u)
    fs.heartbeat()
    seqs = []
    while True:
        ev = c.event()
        seqs.append(int(ev["Event-Sequence"]))
        if ev["Event-Name"] == "HEARTBEAT":
            break
    # 3 CREATE + 3 ANSWER, bridge (B CREATE, B ANSWER, BRIDGE), 2 x 3 plain ends, 7 bridged ends, HEARTBEAT
    assert len(seqs) == 3 + 3 + 3 + 6 + 7 + 1
    assert seqs == sorted(set(seqs))


# ---- accounts ------------------------------------------------------------------------------

def test_account_on_answer_appears_from_answer_on(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP")
    late = fs.create_call("acme", account_on="answer")
    assert "variable_accountcode" not in c.event("CHANNEL_CREATE")
    assert fs.calls()[late]["account_known"] is False
    fs.answer(late)
    assert c.event("CHANNEL_ANSWER")["variable_accountcode"] == "acme"
    early = fs.create_call("1000", account_on="create")
    assert c.event("CHANNEL_CREATE")["variable_accountcode"] == "1000"
    nobody = fs.create_call(None)
    ev = c.event("CHANNEL_CREATE")
    assert "variable_accountcode" not in ev and ev["Caller-Username"] == "anonymous"
    rejected = fs.create_call("acme", account_on="answer", variable="x_tenant",
                              extra_vars={"x_plan": "gold"})
    assert "variable_x_tenant" not in c.event("CHANNEL_CREATE")
    fs.hangup(rejected, "CALL_REJECTED")  # never answered: the account shows up on HANGUP
    ev = c.event("CHANNEL_HANGUP")
    assert (ev["variable_x_tenant"], ev["variable_x_plan"], ev["Answer-State"]) == (
        "acme", "gold", "hangup")
    assert fs.calls()[early]["answered"] is False and nobody in fs.calls()


HOSTILE = ["acme\napi hupall", "a b/c:d@e", "100%", "ünï©ødé", "x\r\n\r\nContent-Length: 5",
           "+&=?#\"'{}"]


@pytest.mark.parametrize("account", HOSTILE)
def test_hostile_account_is_encoded_like_freeswitch(fs: FakeFreeSWITCH, connect,
                                                    account: str) -> None:
    c = connect().login(events="CHANNEL_CREATE")
    fs.create_call(account)
    headers, body = c.frame()
    assert int(headers["Content-Length"]) == len(body)
    lines = [line for line in body.split(b"\n") if line.startswith(b"variable_accountcode: ")]
    assert len(lines) == 1
    value = lines[0].decode()[len("variable_accountcode: "):]
    assert value == fs_url_encode(account)
    assert fs_url_decode(value) == account
    assert not re.search(r"[\s:@]", value)
    assert fields(body)["Caller-Username"] == account
    assert fields(body)["Channel-Name"] == f"sofia/external/{account}@127.0.0.1:" + \
        fields(body)["variable_sip_from_port"]


def test_url_encoding_matches_values_in_the_capture() -> None:
    real = dict(first_event("plain_load.bin", lambda e: e["Event-Name"] == "HEARTBEAT"))
    assert fs_url_encode("1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit") == \
        real["FreeSWITCH-Version"]
    assert fs_url_encode(fs_url_decode(real["Up-Time"])) == real["Up-Time"]
    assert fs_url_encode("Wed, 25 Nov 2026 18:22:30 GMT") == real["Event-Date-GMT"]
    assert fs_url_encode("sofia/external/acct10@127.0.0.1:12000") == \
        "sofia/external/acct10%40127.0.0.1%3A12000"
    assert fs_url_encode("50%41") == "50%41"  # FreeSWITCH never re-encodes an uppercase %XX
    assert fs_url_encode("50%4a") == "50%254a"
    assert fs_url_encode("") == ""


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1))
def test_url_encoding_round_trips_and_is_line_safe(value: str) -> None:
    encoded = fs_url_encode(value)
    assert not re.search(r"[\x00-\x20\x7f-\U0010ffff:]", encoded)
    if not re.search(r"%[0-9A-F]{2}", value):
        assert fs_url_decode(encoded) == value


# ---- realism of the rendered events ---------------------------------------------------------

A, B = "aaaaaaaa-1111-4222-8333-444444444444", "bbbbbbbb-1111-4222-8333-444444444444"


def _real(name: str, file: str, **match: str) -> list[tuple[str, str]]:
    return first_event(file, lambda e: e["Event-Name"] == name and all(
        e.get(k) == v for k, v in match.items()))


REALISM_CASES = [
    # (rendered event kwargs, fixture file, fixture match)
    (dict(name="CHANNEL_CREATE", account=None), "plain_load.bin", {}),
    (dict(name="CHANNEL_ANSWER", account="acct10"), "plain_load.bin", {}),
    (dict(name="CHANNEL_HANGUP_COMPLETE", account="acct12"), "plain_load.bin",
     {"Hangup-Cause": "NORMAL_CLEARING"}),
    (dict(name="CHANNEL_HANGUP_COMPLETE", account="acct3", answered=False, cause="CALL_REJECTED"),
     "plain_load.bin", {"Hangup-Cause": "CALL_REJECTED"}),
    (dict(name="CHANNEL_HANGUP", account="acct3"), "plain_calls.bin",
     {"Caller-Username": "acct3", "Caller-Destination-Number": "9001"}),
    (dict(name="CHANNEL_DESTROY", account="acct3"), "plain_calls.bin",
     {"Caller-Username": "acct3", "Caller-Destination-Number": "9001"}),
    (dict(name="CHANNEL_CREATE", b_leg=True, other_leg=A), "plain_bridged.bin",
     {"Call-Direction": "outbound", "Unique-ID": "471f9d8e-6f76-4d55-9a76-e3e09776525a"}),
    (dict(name="CHANNEL_ANSWER", b_leg=True, other_leg=A), "plain_bridged.bin",
     {"Call-Direction": "outbound", "Unique-ID": "471f9d8e-6f76-4d55-9a76-e3e09776525a"}),
    (dict(name="CHANNEL_ANSWER", other_leg=B, account="acct1"), "plain_bridged.bin",
     {"Call-Direction": "inbound", "Unique-ID": "6e3cfff3-8692-405e-af1c-91f7ec67ef18"}),
    (dict(name="CHANNEL_BRIDGE", other_leg=B, account="acct1"), "plain_bridged.bin",
     {"Unique-ID": "6e3cfff3-8692-405e-af1c-91f7ec67ef18"}),
    (dict(name="CHANNEL_UNBRIDGE", other_leg=B, account="acct1"), "plain_bridged.bin",
     {"Unique-ID": "6e3cfff3-8692-405e-af1c-91f7ec67ef18"}),
    (dict(name="CHANNEL_HANGUP_COMPLETE", other_leg=B, account="acct1"), "plain_bridged.bin",
     {"Unique-ID": "6e3cfff3-8692-405e-af1c-91f7ec67ef18"}),
    (dict(name="CHANNEL_HANGUP_COMPLETE", b_leg=True, other_leg=A), "plain_bridged.bin",
     {"Unique-ID": "471f9d8e-6f76-4d55-9a76-e3e09776525a"}),
    (dict(name="CHANNEL_DESTROY", b_leg=True, other_leg=A), "plain_bridged.bin",
     {"Unique-ID": "471f9d8e-6f76-4d55-9a76-e3e09776525a"}),
    (dict(name="HEARTBEAT"), "plain_calls.bin", {}),
]


@pytest.mark.parametrize(("kwargs", "file", "match"), REALISM_CASES,
                         ids=[f"{k['name']}-{f}-{i}" for i, (k, f, _) in enumerate(REALISM_CASES)])
def test_rendered_event_has_the_real_header_names_and_size(kwargs: dict, file: str,
                                                           match: dict[str, str]) -> None:
    real = _real(kwargs["name"], file, **match)
    rendered = render_event(uuid=A if not kwargs.get("b_leg") else B, seq=1234, **kwargs)
    headers, body = next(iter_frames(rendered))
    assert list(headers) == ["Content-Length", "Content-Type"]
    assert headers == {"Content-Length": str(len(body)), "Content-Type": "text/event-plain"}
    outer = f"Content-Length: {len(body)}\nContent-Type: text/event-plain\n\n"
    assert rendered == outer.encode() + body
    mine = parse_plain_body(body)
    assert {k for k, _ in mine} == {k for k, _ in real}
    real_size = sum(len(k) + len(v) + 3 for k, v in real) + 1
    assert abs(len(body) - real_size) <= 0.2 * real_size
    assert body.endswith(b"\n\n") and not body.endswith(b"\n\n\n")
    ev = fields(body)
    assert ev["Event-Sequence"] == "1234"
    if kwargs["name"] != "HEARTBEAT":
        assert ev["Unique-ID"] == (B if kwargs.get("b_leg") else A)


def test_served_events_match_the_real_header_names(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE")
    uuid = fs.create_call("acct10", account_on="answer")
    fs.answer(uuid)
    fs.hangup(uuid)
    for name, match in (("CHANNEL_CREATE", {}), ("CHANNEL_ANSWER", {}),
                        ("CHANNEL_HANGUP_COMPLETE", {"Hangup-Cause": "NORMAL_CLEARING"})):
        headers, body = c.frame()
        real = _real(name, "plain_load.bin", **match)
        assert [k for k, _ in parse_plain_body(body)] == [k for k, _ in real]
        assert fields(body)["Unique-ID"] == uuid


def test_bridged_call_order_and_linking_headers(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE "
                               "CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY")
    a = fs.create_call("acct1", account_on="answer", dest="9005")
    b = fs.bridge(a)
    assert fs.calls()[a]["b_leg"] == b and fs.calls()[b]["a_leg"] == a
    fs.hangup(a)
    seen = []
    for _ in range(12):
        ev = c.event()
        seen.append(("A" if ev["Unique-ID"] == a else "B") + ":" + ev["Event-Name"][8:])
        if ev["Unique-ID"] == b:
            assert ev["Call-Direction"] == "outbound" and ev["Other-Leg-Unique-ID"] == a
            assert "variable_accountcode" not in ev
        elif ev["Event-Name"] in ("CHANNEL_CREATE", "CHANNEL_ANSWER"):
            assert "Other-Leg-Unique-ID" not in ev
        else:
            assert ev["Other-Leg-Unique-ID"] == b
    assert seen == ["A:CREATE", "B:CREATE", "B:ANSWER", "A:ANSWER", "A:BRIDGE", "A:HANGUP",
                    "B:HANGUP", "B:HANGUP_COMPLETE", "A:UNBRIDGE", "B:DESTROY",
                    "A:HANGUP_COMPLETE", "A:DESTROY"]
    assert fs.calls() == {}


def test_json_events_minimal(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login()
    c.send("event json CHANNEL_CREATE")
    assert c.frame()[0]["Reply-Text"] == "+OK event listener enabled json"
    uuid = fs.create_call("a b\nc")
    headers, body = c.frame()
    assert list(headers) == ["Content-Length", "Content-Type"]
    assert headers["Content-Type"] == "text/event-json" and not body.endswith(b"\n")
    ev = json.loads(body)
    assert (ev["Unique-ID"], ev["variable_accountcode"]) == (uuid, "a b\nc")
    real = json.loads(next(b for h, b in iter_frames(fixture("json_calls.bin"))
                           if h.get("Content-Type") == "text/event-json"))
    assert set(ev) == set(real) | {"variable_accountcode"}  # account_on=create
    job = json.loads(plain_to_json(b"Event-Name: BACKGROUND_JOB\nContent-Length: 4\n\n+OK\n"))
    assert job == {"Event-Name": "BACKGROUND_JOB", "Content-Length": "4", "_body": "+OK\n"}


# ---- faults, restart, delays ----------------------------------------------------------------

def test_restart_ends_calls_notifies_and_keeps_listening(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="ALL")
    uuid = fs.create_call("acme")
    fs.answer(uuid)
    fs.hash["esl_guard"] = {"acme": "1"}
    old_core = fs.core_uuid
    c.event("CHANNEL_CREATE")
    c.event("CHANNEL_ANSWER")
    fs.restart()
    assert fs.calls() == {} and fs.hash == {} and fs.core_uuid != old_core
    assert c.event("SHUTDOWN")["Event-Info"] == "System Shutting Down"
    hangup = c.event("CHANNEL_HANGUP")
    assert (hangup["Unique-ID"], hangup["Hangup-Cause"]) == (uuid, "SYSTEM_SHUTDOWN")
    c.event("CHANNEL_HANGUP_COMPLETE")
    c.event("CHANNEL_DESTROY")
    assert c.frame() == ({"Content-Type": "text/disconnect-notice", "Content-Length": "31"},
                         b"The system is being shut down.\n")
    fresh = fs.create_call("after-restart")  # a closing connection gets nothing more
    assert c.until_eof().endswith(b"The system is being shut down.\n")
    assert fs.wait_for(lambda: fs.connections == 0)
    again = connect().login()
    assert [r["uuid"] for r in json.loads(again.api("show channels as json"))["rows"]] == [fresh]


def test_drop_connections_cuts_clients(fs: FakeFreeSWITCH, connect) -> None:
    clients = [connect().login(), connect().login()]
    assert fs.wait_for(lambda: fs.connections == 2)
    fs.drop_connections()
    for c in clients:
        with pytest.raises(EOFError):
            c.frame()
    assert fs.wait_for(lambda: fs.connections == 0)
    assert connect().login().api("status").startswith(b"UP ")


def test_send_raw_reaches_every_client(fs: FakeFreeSWITCH, connect) -> None:
    c1, c2 = connect().login(), connect().login()
    assert fs.wait_for(lambda: fs.connections == 2)
    fs.send_raw(b"Content-Length: 5\nContent-Type: text/event-plain\n\nab")
    for c in (c1, c2):
        assert c.wait_raw(lambda raw: raw.endswith(b"text/event-plain\n\nab"))
    with pytest.raises(TimeoutError):  # a truncated frame stays truncated
        c1.frame(timeout=0.2)


def test_api_delay_lets_events_overtake_the_reply(fs: FakeFreeSWITCH, connect) -> None:
    c = connect().login(events="CHANNEL_CREATE")
    fs.api_delay = 0.3
    started = time.monotonic()
    c.send("api show channels count")
    assert fs.wait_for(lambda: fs.commands[-1] == "api show channels count")
    uuid = fs.create_call("acme")
    assert c.event("CHANNEL_CREATE")["Unique-ID"] == uuid
    headers, body = c.frame()
    assert headers["Content-Type"] == "api/response" and body == b"\n1 total.\n"
    assert time.monotonic() - started >= 0.25


def test_fail_api_answers_an_error(fs: FakeFreeSWITCH, connect) -> None:
    fs.fail_api = {"show"}
    c = connect().login()
    assert c.api("show channels as json") == b"-ERR simulated failure\n"
    assert c.api("hash insert/r/k/v") == b"+OK\n"


def test_wait_for_polls_until_true_or_deadline(fs: FakeFreeSWITCH) -> None:
    flag: list[int] = []
    gevent.spawn_later(0.05, flag.append, 1)
    assert fs.wait_for(lambda: flag, timeout=2)
    started = time.monotonic()
    assert fs.wait_for(lambda: False, timeout=0.1) is False
    assert 0.09 <= time.monotonic() - started < 1


def test_wrong_password_after_password_change(fs: FakeFreeSWITCH, connect) -> None:
    fs.password = "s3cret"
    c = connect()
    c.frame()
    c.send("auth ClueCon")
    assert c.frame()[0]["Reply-Text"] == "-ERR invalid"
    assert c.frame()[0]["Content-Type"] == "text/disconnect-notice"
    assert connect().login("s3cret").api("status").startswith(b"UP ")
