"""ESL wire framing: bytes from the socket -> frames.  Pure, no I/O.

A frame is a block of ``Header: value`` lines ended by a blank line; when ``Content-Length: N``
is present exactly N bytes of body follow.  The reader is fed arbitrary chunks (large reads are
the fast path) and returns whole frames; it never raises on bad data except
:class:`ProtocolError`, which means the stream cannot be trusted any more and the connection must
be reset (and the node resynced).

Speed: FreeSWITCH frames every event as exactly ``Content-Length: N\\nContent-Type:
text/event-plain\\n\\n``; that shape is recognised without parsing header lines, each body is
copied once, and a frame larger than the chunks it arrives in is joined once when complete.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # real events are < 12 KB; `show channels` of 10k calls ~ 15 MB
MAX_HEADER_BLOCK = 64 * 1024

_CL = b"Content-Length: "
_EVENT_TYPE = b"Content-Type: text/event-plain\n\n"
_EVENT_HEADERS: Mapping[str, str] = MappingProxyType({"Content-Type": "text/event-plain"})


class ProtocolError(Exception):
    """The byte stream is not ESL any more (bad length, oversized frame, garbage)."""


class Frame:
    __slots__ = ("content_type", "headers", "body")

    def __init__(self, content_type: str, headers: Mapping[str, str], body: bytes) -> None:
        self.content_type = content_type
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Frame({self.content_type!r}, {dict(self.headers)!r}, {len(self.body)} bytes)"


class FrameReader:
    """Incremental frame splitter.  ``feed(chunk)`` returns the frames completed by it."""

    __slots__ = ("_buf", "_max_frame", "_parts", "_parts_len", "_need")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = b""
        self._max_frame = max_frame
        self._parts: list[bytes] = []  # chunks of one large frame still arriving
        self._parts_len = 0
        self._need = 0                 # bytes needed in _parts before it is worth parsing

    @property
    def buffered(self) -> int:
        return len(self._buf) + self._parts_len

    def feed(self, data: bytes) -> list[Frame]:
        if self._parts:
            self._parts.append(data)
            self._parts_len += len(data)
            if self._parts_len < self._need:
                return []
            buf = b"".join(self._parts)
            self._parts, self._parts_len, self._need = [], 0, 0
        else:
            buf = self._buf + data if self._buf else data
        frames: list[Frame] = []
        append = frames.append
        pos = 0
        size = len(buf)
        max_frame = self._max_frame
        while pos < size:
            if buf.startswith(_CL, pos):  # the fast path: an event, framed as FreeSWITCH does
                nl = buf.find(b"\n", pos + 16, pos + 40)
                if nl > 0 and buf.startswith(_EVENT_TYPE, nl + 1):
                    digits = buf[pos + 16:nl]
                    if not digits.isdigit():  # bytes.isdigit() is ASCII-only
                        raise ProtocolError(f"bad Content-Length {digits[:40]!r}")
                    length = int(digits)
                    if length > max_frame:
                        raise ProtocolError(f"frame of {length} bytes over the {max_frame} cap")
                    start = nl + 33
                    end = start + length
                    if end > size:
                        self._wait_for(end - pos)
                        break
                    append(Frame("text/event-plain", _EVENT_HEADERS, buf[start:end]))
                    pos = end
                    continue
            if buf[pos] == 10:  # a stray newline between frames: never sent, cheap to allow
                pos += 1
                continue
            end = buf.find(b"\n\n", pos)
            if end < 0:
                if size - pos > MAX_HEADER_BLOCK:
                    raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
                break
            if end - pos > MAX_HEADER_BLOCK:
                raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
            headers = _parse_headers(buf[pos:end])
            length = 0
            raw_len = headers.get("Content-Length")
            if raw_len is not None:
                if not (raw_len.isascii() and raw_len.isdigit()):
                    raise ProtocolError(f"bad Content-Length {raw_len[:40]!r}")
                length = int(raw_len)
                if length > max_frame:
                    raise ProtocolError(f"frame of {length} bytes over the {max_frame} cap")
            body_start = end + 2
            if size - body_start < length:
                self._wait_for(body_start + length - pos)
                break
            pos = body_start + length
            append(Frame(headers.get("Content-Type", ""), headers, buf[body_start:pos]))
        rest = buf[pos:] if pos < size else b""
        if self._need:
            self._parts, self._parts_len, self._buf = [rest], len(rest), b""
        else:
            self._buf = rest
        return frames

    def _wait_for(self, frame_size: int) -> None:
        """The frame at the buffer's start needs ``frame_size`` bytes: when that is far more
        than a chunk, collect chunks and join them once instead of re-copying the buffer."""
        if frame_size > 1024 * 1024:
            self._need = frame_size


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    text = block.decode("utf-8", "replace")
    for line in text.split("\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"not a header line: {line[:60]!r}")
        headers[key.strip()] = value.strip()
    return headers
