"""Byte shapes of FreeSWITCH's event socket (mod_event_socket, 1.10.12), as captured.

Every constant here was checked against ``tests/fixtures/esl/*.bin`` (real bytes from a real
FreeSWITCH): header order differs by frame type (``Content-Length`` first for events,
``Content-Type`` first for api/response and disconnect notices), ``command/reply`` has no body.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import unquote

AUTH_REQUEST = b"Content-Type: auth/request\n\n"

BYE_NOTICE_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTDOWN_NOTICE_BODY = b"The system is being shut down.\n"

# FreeSWITCH's SWITCH_URL_UNSAFE (src/include/switch_utils.h); switch_url_encode() also encodes
# every byte below ' ' or above '~' (char is signed), and leaves a '%' that already starts an
# uppercase "%XX" alone (double_encode is false in switch_event_serialize()).
URL_UNSAFE = "\r\n #%&+:;<=>?@[\\]^`{|}\""
_HEX = "0123456789ABCDEF"
_ENC_TABLE: tuple[str, ...] = tuple(
    f"%{b:02X}" if (b < 0x20 or b > 0x7E or chr(b) in URL_UNSAFE) else chr(b) for b in range(256)
)
_SAFE_RE = re.compile(r"[^\r\n #%&+:;<=>?@\[\\\]^`{|}\"\x00-\x1f\x7f-\U0010ffff]*\Z")


def fs_url_encode(value: str) -> str:
    """Encode ``value`` exactly like FreeSWITCH's ``switch_url_encode`` (as used for plain events).

    Not ``urllib.parse.quote``: ``/``, ``,``, ``~``, ``!``, ``$``, ``'``, ``(``, ``)`` and ``*``
    stay as they are, and a ``%`` followed by two *uppercase* hex digits is not re-encoded.
    """
    if _SAFE_RE.match(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    out: list[str] = []
    n = len(raw)
    table = _ENC_TABLE
    for i, b in enumerate(raw):
        if b == 0x25 and n - 1 - i > 1 and chr(raw[i + 1]) in _HEX and chr(raw[i + 2]) in _HEX:
            out.append("%")
        else:
            out.append(table[b])
    return "".join(out)


def fs_url_decode(value: str) -> str:
    """Inverse of :func:`fs_url_encode` for well-formed input (``+`` is not a space)."""
    return unquote(value, errors="surrogateescape") if "%" in value else value


def command_reply(text: str, extra: str = "") -> bytes:
    """``command/reply`` frame: no body, the result is in ``Reply-Text``."""
    return f"Content-Type: command/reply\nReply-Text: {text}\n{extra}\n".encode(
        "utf-8", "surrogateescape"
    )


def api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def disconnect_notice(body: bytes = BYE_NOTICE_BODY) -> bytes:
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n%s" % (len(body), body)


def frame_event_plain(body: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)


def frame_event_json(body: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n%s" % (len(body), body)


def plain_to_json(body: bytes) -> bytes:
    """Convert a rendered plain event body into FreeSWITCH's JSON form.

    One key per header line in order (duplicates kept, as cJSON does), values decoded, every
    value a string; an inner body becomes ``"Content-Length"`` + ``"_body"``; no trailing newline.
    """
    text = body.decode("utf-8", "surrogateescape")
    head, sep, inner = text.partition("\n\n")
    parts: list[str] = []
    content_length: str | None = None
    for line in head.split("\n"):
        if not line:
            continue
        key, _, value = line.partition(": ")
        if key == "Content-Length":
            content_length = value
            continue
        if value == "_undef_":
            value = ""
        parts.append(_json_str(key) + ":" + _json_str(fs_url_decode(value)))
    if content_length is not None:
        parts.append('"Content-Length":' + _json_str(content_length))
        parts.append('"_body":' + _json_str(inner[: int(content_length)]))
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogateescape")


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def iter_frames(data: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    """Split a captured byte stream into (outer headers, body) pairs; stops at a partial frame."""
    i = 0
    n = len(data)
    while i < n:
        j = data.find(b"\n\n", i)
        if j < 0:
            return
        headers: dict[str, str] = {}
        for line in data[i:j].decode("utf-8", "surrogateescape").split("\n"):
            key, _, value = line.partition(": ")
            headers[key] = value
        i = j + 2
        length = int(headers.get("Content-Length", "0") or 0)
        if i + length > n:
            return
        yield headers, data[i : i + length]
        i += length


def parse_plain_body(body: bytes) -> list[tuple[str, str]]:
    """Header lines of a plain event body as (name, raw still-encoded value), in order."""
    head = body.decode("utf-8", "surrogateescape").partition("\n\n")[0]
    out: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line:
            key, _, value = line.partition(": ")
            out.append((key, value))
    return out
