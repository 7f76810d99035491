"""ESL wire framing: bytes from the socket -> frames.  Pure, no I/O of its own.

A frame is a block of ``Header: value`` lines ended by a blank line; when ``Content-Length: N``
is present exactly N bytes of body follow.  :class:`FrameReader` owns one reusable buffer that
the caller fills (``fill(sock.recv_into)``, the fast path, or ``feed(chunk)``) and returns whole
frames.  It never raises on bad data except :class:`ProtocolError`, which means the stream cannot
be trusted any more and the connection must be reset (and the node resynced).

Speed: reading into one long-lived buffer avoids a fresh allocation (and its page faults) per
read; FreeSWITCH frames every event as exactly ``Content-Length: N\\nContent-Type:
text/event-plain\\n\\n``, which is recognised without parsing header lines; each body is copied
once.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # real events are < 12 KB, the commands' replies tiny
#: cap on an ``api/response`` body where a big answer is expected (the reconciliation's own
#: connection): ``show channels as json`` is ~950 bytes a channel, 19 MB for 20,000 channels;
#: 256 MiB is ~270,000 channels, far over what one FreeSWITCH carries, and still a bound.
MAX_REPLY = 256 * 1024 * 1024
MAX_HEADER_BLOCK = 64 * 1024
READ_BUFFER = 1024 * 1024

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
    """Incremental frame splitter over one reusable buffer."""

    __slots__ = ("_buf", "_view", "_start", "_end", "_max_frame", "_max_reply", "_need")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, size: int = READ_BUFFER, *,
                 max_reply: int | None = None) -> None:
        """``max_frame`` caps every frame, except ``api/response`` bodies, capped by
        ``max_reply`` (default: ``max_frame``); either is a bound on what a peer can make us
        allocate."""
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = 0  # unparsed bytes are _buf[_start:_end]
        self._end = 0
        self._max_frame = max_frame
        self._max_reply = max_frame if max_reply is None else max_reply
        self._need = 0  # size of the incomplete frame at _start, once its length is known

    @property
    def buffered(self) -> int:
        return self._end - self._start

    def fill(self, recv_into: Callable[[memoryview], int]) -> int:
        """Let ``recv_into`` (e.g. ``sock.recv_into``) write into the free space; returns the
        byte count it reports (0 = end of stream).  Call :meth:`frames` afterwards."""
        self._make_room()
        with self._view[self._end:] as free:
            n = recv_into(free)
        self._end += n
        return n

    def feed(self, data: bytes, on_event: Callable[[bytes], object] | None = None) -> list[Frame]:
        """Add ``data`` and return the frames it completes (see :meth:`frames`)."""
        frames: list[Frame] = []
        view = memoryview(data)
        while view:
            self._make_room()
            n = min(len(view), len(self._buf) - self._end)
            self._buf[self._end:self._end + n] = view[:n]
            self._end += n
            view = view[n:]
            frames += self.frames(on_event)
        return frames

    def _make_room(self) -> None:
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
        elif start:  # move the partial frame to the front (it is at most one frame)
            tail = self._view[start:end].tobytes()
            self._buf[:len(tail)] = tail
            self._start, self._end = 0, len(tail)
        need = max(self._need, self._end + 1)
        if need > len(self._buf):  # a frame larger than the buffer: grow it, once if we can
            size = max(need, 2 * len(self._buf))
            buf = bytearray(size)  # calloc: pages are only touched when written
            buf[:self._end] = self._view[:self._end]
            self._view.release()
            self._buf, self._view = buf, memoryview(buf)

    def frames(self, on_event: Callable[[bytes], object] | None = None) -> list[Frame]:
        """The frames complete in the buffer.  With ``on_event``, plain events framed the way
        FreeSWITCH frames them are passed to it (their body) instead, in stream order relative
        to each other; other frames are returned."""
        buf, view = self._buf, self._view
        frames: list[Frame] = []
        append = frames.append
        pos, size = self._start, self._end
        max_frame = self._max_frame
        self._need = 0
        try:
            while pos < size:
                if buf.startswith(_CL, pos, size):  # the fast path: an event, framed as FS does
                    nl = buf.find(b"\n", pos + 16, min(pos + 40, size))
                    if nl > 0 and buf.startswith(_EVENT_TYPE, nl + 1, size):
                        digits = buf[pos + 16:nl]
                        if not digits.isdigit():  # bytearray.isdigit() is ASCII-only
                            raise ProtocolError(f"bad Content-Length {bytes(digits[:40])!r}")
                        length = int(digits)
                        if length > max_frame:
                            raise ProtocolError(f"frame of {length} bytes over the {max_frame} cap")
                        start = nl + 33
                        end = start + length
                        if end > size:
                            self._need = end - pos
                            break
                        body = view[start:end].tobytes()
                        pos = end
                        if on_event is None:
                            append(Frame("text/event-plain", _EVENT_HEADERS, body))
                        else:
                            on_event(body)
                        continue
                if buf[pos] == 10:  # a stray newline between frames: never sent, cheap to allow
                    pos += 1
                    continue
                end = buf.find(b"\n\n", pos, size)
                if end < 0:
                    if size - pos > MAX_HEADER_BLOCK:
                        raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
                    break
                if end - pos > MAX_HEADER_BLOCK:
                    raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
                headers = _parse_headers(view[pos:end].tobytes())
                length = 0
                raw_len = headers.get("Content-Length")
                if raw_len is not None:
                    if not (raw_len.isascii() and raw_len.isdigit()):
                        raise ProtocolError(f"bad Content-Length {raw_len[:40]!r}")
                    length = int(raw_len)
                    cap = (self._max_reply if headers.get("Content-Type") == "api/response"
                           else max_frame)
                    if length > cap:
                        raise ProtocolError(f"frame of {length} bytes over the {cap} cap")
                body_start = end + 2
                if size - body_start < length:
                    self._need = body_start + length - pos
                    break
                body = view[body_start:body_start + length].tobytes()
                pos = body_start + length
                append(Frame(headers.get("Content-Type", ""), headers, body))
        finally:
            self._start = pos
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
