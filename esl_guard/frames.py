"""ESL wire framing: bytes from the socket -> frames.  Pure, no I/O.

A frame is a block of ``Header: value`` lines ended by a blank line; when ``Content-Length: N``
is present exactly N bytes of body follow.  The reader is fed arbitrary chunks (large reads are
the fast path) and returns whole frames; it never raises on bad data except
:class:`ProtocolError`, which means the stream cannot be trusted any more and the connection must
be reset (and the node resynced).
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_FRAME = 4 * 1024 * 1024  # real events are < 12 KB; show channels of 10k calls ~ 15 MB
MAX_HEADER_BLOCK = 64 * 1024


class ProtocolError(Exception):
    """The byte stream is not ESL any more (bad length, oversized frame, garbage)."""


@dataclass(slots=True)
class Frame:
    content_type: str
    headers: dict[str, str]
    body: bytes


class FrameReader:
    """Incremental frame splitter.  ``feed(chunk)`` returns the frames completed by it."""

    __slots__ = ("_buf", "_max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        size = len(buf)
        while pos < size:
            # Tolerate stray newlines between frames (never sent by FreeSWITCH, cheap to allow).
            while pos < size and buf[pos] == 10:
                pos += 1
            end = buf.find(b"\n\n", pos)
            if end < 0:
                if size - pos > MAX_HEADER_BLOCK:
                    raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
                break
            if end - pos > MAX_HEADER_BLOCK:
                raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
            headers = _parse_headers(bytes(buf[pos:end]))
            length = 0
            raw_len = headers.get("Content-Length")
            if raw_len is not None:
                if not (raw_len.isascii() and raw_len.isdigit()):
                    raise ProtocolError(f"bad Content-Length {raw_len[:40]!r}")
                length = int(raw_len)
                if length > self._max_frame:
                    raise ProtocolError(f"frame of {length} bytes over the {self._max_frame} cap")
            body_start = end + 2
            if size - body_start < length:
                break
            body = bytes(buf[body_start:body_start + length])
            pos = body_start + length
            frames.append(Frame(headers.get("Content-Type", ""), headers, body))
        if pos:
            del buf[:pos]
        return frames


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
