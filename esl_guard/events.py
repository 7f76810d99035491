"""Plain ESL event bodies -> call events.  Pure, no I/O.

A real channel event carries 100-230 URL-encoded headers (4-12 KB); esl-guard needs at most
four of them, and for most events only ``Unique-ID``.  :class:`LazyEvent` looks a header up
(``bytes.find``) only when the tracker asks for it, and URL-decodes just that value.  A header
only counts when it lies before the blank line that ends the header block, so nothing in an
event's body can pose as a header.
"""
from __future__ import annotations

from urllib.parse import unquote

from esl_guard.model import CallEvent

#: Events the daemon subscribes to.  CHANNEL_PROGRESS(_MEDIA) carry a dialplan-set account on a
#: ringing call before it is answered; HANGUP and HANGUP_COMPLETE both end a call (whichever
#: comes first; a peer may send only one of them).
CALL_EVENTS = frozenset({
    "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY",
})
END_EVENTS = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})
SUBSCRIPTION = (
    "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER CHANNEL_HANGUP "
    "CHANNEL_HANGUP_COMPLETE HEARTBEAT BACKGROUND_JOB"
)

_EVENT_NAME = b"Event-Name: "
_UNIQUE_ID = b"\nUnique-ID: "
_DIRECTION = b"\nCall-Direction: "
_OTHER_LEG = b"\nOther-Leg-Unique-ID: "
_UNSET = object()


def raw_value(body: bytes, key: bytes) -> bytes | None:
    """The raw value of header ``key`` (given as ``b"\\nName: "``), or None."""
    i = body.find(key)
    if i < 0:
        if not body.startswith(key[1:]):
            return None
        start = len(key) - 1
    else:
        if body.find(b"\n\n", 0, i + 1) >= 0:
            return None  # past the header block: part of a body, not a header
        start = i + len(key)
    stop = body.find(b"\n", start)
    return body[start:] if stop < 0 else body[start:stop]


def header_value(body: bytes, key: bytes) -> str | None:
    """The URL-decoded value of header ``key`` (``b"\\nName: "``), or None."""
    raw = raw_value(body, key)
    if raw is None:
        return None
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
    return header_value(body, b"\n" + _EVENT_NAME)


class LazyEvent:
    """A call event whose ``account`` and ``b_leg`` are decoded on first use."""

    __slots__ = ("name", "node", "uuid", "body", "_account_key", "_account", "_b_leg")

    def __init__(self, name: str, node: str, uuid: str, body: bytes, account_key: bytes) -> None:
        self.name = name
        self.node = node
        self.uuid = uuid
        self.body = body
        self._account_key = account_key
        self._account: object = _UNSET
        self._b_leg: bool | None = None

    @property
    def account(self) -> str | None:
        if self._account is _UNSET:
            self._account = header_value(self.body, self._account_key) or None
        return self._account  # type: ignore[return-value]

    @property
    def b_leg(self) -> bool:
        """The outbound leg of a bridge/originate: outbound, with an Other-Leg-Unique-ID."""
        if self._b_leg is None:
            self._b_leg = (raw_value(self.body, _DIRECTION) == b"outbound"
                           and raw_value(self.body, _OTHER_LEG) is not None)
        return self._b_leg

    @property
    def other_leg(self) -> str | None:
        return header_value(self.body, _OTHER_LEG) or None


class EventDecoder:
    """Decodes plain event bodies for one node and one account variable."""

    __slots__ = ("node", "account_key")

    def __init__(self, node: str, account_variable: str = "accountcode") -> None:
        self.node = node
        self.account_key = b"\nvariable_" + account_variable.encode("ascii") + b": "

    def lazy(self, body: bytes, name: str) -> LazyEvent | None:
        """A LazyEvent, or None when the event has no Unique-ID."""
        raw = raw_value(body, _UNIQUE_ID)
        if not raw:
            return None
        uuid = raw.decode("ascii", "replace") if b"%" not in raw else header_value(body, _UNIQUE_ID)
        return LazyEvent(name, self.node, uuid or "", body, self.account_key)

    def decode(self, body: bytes, name: str) -> CallEvent | None:
        """Every field at once (tests, tools); the daemon uses :meth:`lazy`."""
        ev = self.lazy(body, name)
        if ev is None:
            return None
        return CallEvent(name, self.node, ev.uuid, ev.account, ev.b_leg, ev.other_leg)
