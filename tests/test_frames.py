"""The frame reader against the real bytes captured from FreeSWITCH 1.10.12."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esl_guard.events import event_name
from esl_guard.frames import FrameReader, ProtocolError

FIXTURES = Path(__file__).parent / "fixtures" / "esl"


def frames_of(name: str, chunk: int = 1 << 20) -> list:
    data = (FIXTURES / name).read_bytes()
    reader = FrameReader()
    out = []
    for i in range(0, len(data), chunk):
        out += reader.feed(data[i:i + chunk])
    assert reader.buffered == 0
    return out


def event_counts(frames: list) -> Counter:
    return Counter(event_name(f.body) for f in frames if f.content_type == "text/event-plain")


def test_plain_calls_has_the_documented_events() -> None:
    counts = event_counts(frames_of("plain_calls.bin"))
    assert counts == Counter({"CHANNEL_CREATE": 16, "CHANNEL_ANSWER": 15, "CHANNEL_HANGUP": 16,
                              "CHANNEL_HANGUP_COMPLETE": 16, "CHANNEL_DESTROY": 16,
                              "HEARTBEAT": 1})


def test_plain_load_has_592_events() -> None:
    frames = frames_of("plain_load.bin", chunk=65536)
    counts = event_counts(frames)
    assert sum(counts.values()) == 592
    assert counts["CHANNEL_CREATE"] == 210
    assert counts["CHANNEL_ANSWER"] == 170
    assert counts["CHANNEL_HANGUP_COMPLETE"] == 210


def test_api_response_interleaved_between_events() -> None:
    frames = frames_of("plain_calls.bin")
    types = [f.content_type for f in frames]
    i = types.index("api/response")
    assert types[i - 1] == "text/event-plain" and types[i + 1] == "text/event-plain"
    assert frames[i].body.startswith(b'{"row_count":')


def test_reply_kinds_in_api_replies() -> None:
    frames = frames_of("api_replies.bin")
    assert frames[0].content_type == "auth/request"
    replies = [f.headers.get("Reply-Text") for f in frames if f.content_type == "command/reply"]
    assert replies[0] == "+OK accepted"
    assert "-ERR command not found" in replies
    bodies = [f.body for f in frames if f.content_type == "api/response"]
    assert b"-ERR No such channel!\n" in bodies
    assert b"-ERR no reply\n" in bodies
    assert frames[-1].content_type == "text/disconnect-notice"


def test_auth_failure_and_shutdown_notices() -> None:
    frames = frames_of("auth_fail.bin")
    assert [f.content_type for f in frames] == ["auth/request", "command/reply",
                                                "text/disconnect-notice"]
    assert frames[1].headers["Reply-Text"] == "-ERR invalid"
    frames = frames_of("shutdown_plain_all.bin")
    assert frames[-1].content_type == "text/disconnect-notice"
    assert frames[-1].body == b"The system is being shut down.\n"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=600_000), min_size=1, max_size=30))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    data = (FIXTURES / "plain_bridged.bin").read_bytes()
    whole = FrameReader().feed(data)
    reader = FrameReader()
    got = []
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:], strict=False):
        got += reader.feed(data[a:b])
    assert [(f.content_type, f.body) for f in got] == [(f.content_type, f.body) for f in whole]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    reader = FrameReader(max_frame=1 << 16)
    try:
        for i in range(0, len(data), 97):
            for frame in reader.feed(data[i:i + 97]):
                assert isinstance(frame.body, bytes)
    except ProtocolError:
        pass


@pytest.mark.parametrize("block, message", [
    (b"Content-Length: -5\nContent-Type: text/event-plain\n\n", "bad Content-Length"),
    (b"Content-Length: 12abc\n\n", "bad Content-Length"),
    ("Content-Length: \u00b2\n\n".encode(), "bad Content-Length"),  # a Unicode digit
    (b"Content-Length: 99999999999\n\n", "over the"),
    (b"garbage without a colon\n\n", "not a header line"),
])
def test_bad_frames_raise_protocol_error(block: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        FrameReader().feed(block)


def test_endless_header_block_is_capped() -> None:
    reader = FrameReader()
    with pytest.raises(ProtocolError, match="header block"):
        for _ in range(100):
            reader.feed(b"X" * 1024)


def test_truncated_frame_waits_for_the_rest() -> None:
    reader = FrameReader()
    assert reader.feed(b"Content-Length: 10\nContent-Type: api/response\n\n12345") == []
    frames = reader.feed(b"67890")
    assert frames[0].body == b"1234567890"


def test_a_large_frame_in_many_small_chunks_is_joined_whole() -> None:
    body = b'{"row_count":1,"rows":[' + b"x" * 3_000_000 + b"]}"
    stream = b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
    stream += (FIXTURES / "auth_fail.bin").read_bytes()
    reader = FrameReader()
    frames = []
    for i in range(0, len(stream), 65536):
        frames += reader.feed(stream[i:i + 65536])
    assert frames[0].body == body
    assert [f.content_type for f in frames[1:]] == ["auth/request", "command/reply",
                                                    "text/disconnect-notice"]
    assert reader.buffered == 0


def test_api_replies_have_their_own_cap_and_events_keep_theirs() -> None:
    body = b"x" * 5000
    reply = b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
    event = b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)
    reader = FrameReader(max_frame=4096, max_reply=8192)
    assert [f.body for f in reader.feed(reply)] == [body]
    with pytest.raises(ProtocolError, match="over the 4096 cap"):
        FrameReader(max_frame=4096, max_reply=8192).feed(event)
    # an event framed the other way round takes the generic path: still the event cap
    with pytest.raises(ProtocolError, match="over the 4096 cap"):
        FrameReader(max_frame=4096, max_reply=8192).feed(
            b"Content-Type: text/event-plain\nContent-Length: 5000\n\n")
    with pytest.raises(ProtocolError, match="over the 2048 cap"):
        FrameReader(max_frame=4096, max_reply=2048).feed(reply)
    with pytest.raises(ProtocolError, match="over the 4096 cap"):  # default: the frame cap
        FrameReader(max_frame=4096).feed(reply)


def test_a_reply_far_larger_than_the_read_buffer_is_read_whole() -> None:
    body = b'{"row_count":1,"rows":[' + b"7" * (3 << 20) + b"]}"
    data = b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
    reader = FrameReader(size=1 << 16, max_reply=4 << 20)
    got = []
    for i in range(0, len(data), 100_000):
        got += reader.feed(data[i:i + 100_000])
    assert [f.body for f in got] == [body] and reader.buffered == 0
