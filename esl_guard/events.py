"""Plain ESL event bodies -> :class:`CallEvent`.  Pure, no I/O.

A real channel event carries 100-230 URL-encoded headers (4-12 KB); esl-guard needs five of
them.  Instead of decoding every line (what greenswitch does) this looks up only the headers it
uses with ``bytes.find`` inside the header section and URL-decodes just those values.
"""
from __future__ import annotations

from urllib.parse import unquote

from esl_guard.model import CallEvent

#: Events the daemon subscribes to.  CHANNEL_PROGRESS(_MEDIA) carry a dialplan-set account on a
#: ringing call before it is answered; HANGUP and HANGUP_COMPLETE both end a call (whichever
#: comes first), DESTROY is a last resort for a missed hangup.
CALL_EVENTS = frozenset({
    "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY",
})
END_EVENTS = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})
SUBSCRIPTION = (
    "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER CHANNEL_HANGUP "
    "CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY HEARTBEAT BACKGROUND_JOB"
)

_EVENT_NAME = b"Event-Name: "


def header_value(body: bytes, key: bytes, end: int) -> str | None:
    """The decoded value of header ``key`` (given as ``b"\\nName: "``) before offset ``end``."""
    i = body.find(key, 0, end)
    if i < 0:
        if not body.startswith(key[1:]):
            return None
        start = len(key) - 1
    else:
        start = i + len(key)
    stop = body.find(b"\n", start, end)
    if stop < 0:
        stop = end
    raw = body[start:stop]
    if b"%" in raw:
        return unquote(raw.decode("utf-8", "replace"), errors="replace")
    return raw.decode("utf-8", "replace")


def event_name(body: bytes) -> str | None:
    """Event-Name is the first line of every real event; fall back to a search."""
    if body.startswith(_EVENT_NAME):
        stop = body.find(b"\n", len(_EVENT_NAME))
        if stop < 0:
            return None
        return body[len(_EVENT_NAME):stop].decode("ascii", "replace")
    end = _header_end(body)
    return header_value(body, b"\n" + _EVENT_NAME, end)


def _header_end(body: bytes) -> int:
    end = body.find(b"\n\n")
    return len(body) if end < 0 else end


class EventDecoder:
    """Turns plain event bodies into CallEvents for one node and one account variable."""

    __slots__ = ("node", "_account_key")

    def __init__(self, node: str, account_variable: str = "accountcode") -> None:
        self.node = node
        self._account_key = b"\nvariable_" + account_variable.encode("ascii") + b": "

    def decode(self, body: bytes, name: str) -> CallEvent | None:
        """A CallEvent for a channel event, or None when it lacks a Unique-ID."""
        end = _header_end(body)
        uuid = header_value(body, b"\nUnique-ID: ", end)
        if not uuid:
            return None
        account = header_value(body, self._account_key, end) or None
        other = header_value(body, b"\nOther-Leg-Unique-ID: ", end) or None
        b_leg = False
        if other is not None:
            direction = header_value(body, b"\nCall-Direction: ", end)
            b_leg = direction == "outbound"
        return CallEvent(name, self.node, uuid, account, b_leg, other)
