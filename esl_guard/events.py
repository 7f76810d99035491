"""Plain ESL event bodies -> call events.  Pure, no I/O.

A real channel event carries 100-230 URL-encoded headers (4-12 KB); esl-guard needs at most
four of them, and for most events only ``Unique-ID``.  :class:`LazyEvent` looks a header up
(``bytes.find``) only when the tracker asks for it, and URL-decodes just that value.  A header
only counts when it lies before the blank line that ends the header block (see
:func:`header_end`), so nothing in an event's own body can pose as a header.
"""
from __future__ import annotations

from urllib.parse import unquote

from esl_guard.model import CallEvent

#: Events the daemon subscribes to.  CHANNEL_PROGRESS(_MEDIA) carry a dialplan-set account on a
#: ringing call before it is answered; HANGUP and HANGUP_COMPLETE both end a call (whichever
#: comes first; a peer may send only one of them).  CHANNEL_EXECUTE(_COMPLETE): when the dialplan
#: sets the account and the far end answers at once (200, no 180/183), the A-leg emits no
#: CHANNEL_PROGRESS; its only events carrying the account before CHANNEL_ANSWER are the
#: CHANNEL_EXECUTE_COMPLETE of that `set` and the CHANNEL_EXECUTE of the `bridge`
#: (tests/fixtures/esl/plain_answer_now.bin); :func:`event_filters` lets only those through.
CALL_EVENTS = frozenset({
    "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY",
    "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
})
END_EVENTS = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})
#: Not BACKGROUND_JOB: FreeSWITCH sends every client's bgapi result to every listener subscribed
#: to it (seen on 1.10.12), e.g. another tool's 19 MB `bgapi show channels as json`.
_BASE_EVENTS = ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
                "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "HEARTBEAT")
SUBSCRIPTION = " ".join((*_BASE_EVENTS, "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"))



def event_filters(account_variable: str) -> list[str]:
    """The ``filter`` commands sent after the subscription, so that of all the dialplan's
    CHANNEL_EXECUTE(_COMPLETE) events only those that can carry a call's account first reach
    esl-guard: the `set`/`export` of the account variable (its _COMPLETE carries the account)
    and the `bridge` (its CHANNEL_EXECUTE carries an account set any other way, before the far
    end is called).  mod_event_socket sends an event when any filter matches (``/.../`` is a
    regex), so the other subscribed events get one filter on their Event-Name.
    ``account_variable`` is a plain name (letters, digits, ``_``: the conf checks it)."""
    return [f"Event-Name /^({'|'.join(_BASE_EVENTS)})$/",
            f"Application-Data /^(nolocal:)?{account_variable}=/",
            "Application bridge"]


EXECUTE_EVENTS = frozenset({"CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"})


def execute_wanted(body: bytes, end: int, account_variable: str) -> bool:
    """Whether a CHANNEL_EXECUTE(_COMPLETE) passes :func:`event_filters` (the replay of an
    ``event plain ALL`` capture applies them as FreeSWITCH would)."""
    if raw_value(body, _APPLICATION, end) == b"bridge":
        return True
    data = header_value(body, _APPLICATION_DATA, end) or ""
    data = data.removeprefix("nolocal:")
    return data.startswith(account_variable + "=")


_APPLICATION = b"\nApplication: "
_APPLICATION_DATA = b"\nApplication-Data: "
_EVENT_NAME = b"Event-Name: "
_UNIQUE_ID = b"\nUnique-ID: "
_DIRECTION = b"\nCall-Direction: "
_OTHER_LEG = b"\nOther-Leg-Unique-ID: "
# Call facts read by the detectors (issue 13), only when an account's limits use them.  On a
# real A-leg all four are on every channel event from CHANNEL_CREATE on (fixtures
# plain_all_routing.bin, plain_bridged.bin); CHANNEL_STATE/CALLSTATE lack sip_network_ip.
_DESTINATION = b"\nCaller-Destination-Number: "
_CALLER_ID = b"\nCaller-Caller-ID-Number: "
_NETWORK_IP = b"\nvariable_sip_network_ip: "
_NETWORK_ADDR = b"\nCaller-Network-Addr: "
_CONTEXT = b"\nCaller-Context: "
_LOOPBACK_LEG = b"\nvariable_loopback_leg: "
_LOOPBACK_FROM = b"\nvariable_other_loopback_from_uuid: "
_UNSET = object()


def header_end(body: bytes) -> int:
    """Where the header block ends.  FreeSWITCH ends a body-less event (every channel event)
    with the blank line, so that is the whole body; only an event carrying a body of its own
    needs the (slower) search for the first blank line."""
    if body.endswith(b"\n\n"):
        return len(body)
    end = body.find(b"\n\n")
    return len(body) if end < 0 else end


def raw_value(body: bytes, key: bytes, end: int) -> bytes | None:
    """The raw value of header ``key`` (given as ``b"\\nName: "``) before ``end``, or None."""
    i = body.find(key, 0, end)
    if i < 0:
        if not body.startswith(key[1:]):
            return None
        start = len(key) - 1
    else:
        start = i + len(key)
    stop = body.find(b"\n", start, end)
    return body[start:end] if stop < 0 else body[start:stop]


def header_value(body: bytes, key: bytes, end: int | None = None) -> str | None:
    """The URL-decoded value of header ``key`` (``b"\\nName: "``), or None."""
    raw = raw_value(body, key, header_end(body) if end is None else end)
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


def unique_id(body: bytes, end: int) -> str | None:
    raw = raw_value(body, _UNIQUE_ID, end)
    if not raw:
        return None
    if b"%" in raw:
        return header_value(body, _UNIQUE_ID, end) or None
    return raw.decode("ascii", "replace")


class LazyEvent:
    """A call event whose ``account`` and ``b_leg`` are decoded on first use."""

    __slots__ = ("name", "node", "uuid", "body", "end", "_account_key", "_account", "_b_leg",
                 "_facts")

    def __init__(self, name: str, node: str, uuid: str, body: bytes, end: int,
                 account_key: bytes) -> None:
        self.name = name
        self.node = node
        self.uuid = uuid
        self.body = body
        self.end = end
        self._account_key = account_key
        self._account: object = _UNSET
        self._b_leg: bool | None = None
        self._facts: dict[bytes, str | None] | None = None

    @property
    def account(self) -> str | None:
        if self._account is _UNSET:
            self._account = header_value(self.body, self._account_key, self.end) or None
        return self._account  # type: ignore[return-value]

    @property
    def b_leg(self) -> bool:
        """A leg that is not a call of its own: the outbound leg of a bridge/originate
        (outbound, with an Other-Leg-Unique-ID), or the B side of a loopback/ pair, which is
        inbound and runs the dialplan again (``variable_loopback_leg: B``; the call is the
        channel that originated the pair, tests/fixtures/esl/plain_loopback.bin)."""
        if self._b_leg is None:
            self._b_leg = ((raw_value(self.body, _DIRECTION, self.end) == b"outbound"
                            and raw_value(self.body, _OTHER_LEG, self.end) is not None)
                           or raw_value(self.body, _LOOPBACK_LEG, self.end) == b"B")
        return self._b_leg

    @property
    def other_leg(self) -> str | None:
        return (header_value(self.body, _OTHER_LEG, self.end)
                or header_value(self.body, _LOOPBACK_FROM, self.end) or None)

    # -- call facts: decoded when a detector first asks, then kept with the event
    def _fact(self, key: bytes) -> str | None:
        facts = self._facts
        if facts is None:
            facts = self._facts = {}
        elif key in facts:
            return facts[key]
        value = facts[key] = header_value(self.body, key, self.end)
        return value

    @property
    def destination(self) -> str | None:
        """The dialled number (``Caller-Destination-Number``), a leading ``+`` kept."""
        return self._fact(_DESTINATION)

    @property
    def caller_id(self) -> str | None:
        return self._fact(_CALLER_ID)

    @property
    def source_ip(self) -> str | None:
        """Where the call came from: ``variable_sip_network_ip``, else ``Caller-Network-Addr``."""
        return self._fact(_NETWORK_IP) or self._fact(_NETWORK_ADDR) or None

    @property
    def context(self) -> str | None:
        return self._fact(_CONTEXT)


class EventDecoder:
    """Decodes plain event bodies for one node and one account variable."""

    __slots__ = ("node", "account_key")

    def __init__(self, node: str, account_variable: str = "accountcode") -> None:
        self.node = node
        self.account_key = b"\nvariable_" + account_variable.encode("ascii") + b": "

    def lazy(self, body: bytes, name: str) -> LazyEvent | None:
        """A LazyEvent, or None when the event has no Unique-ID."""
        end = header_end(body)
        uuid = unique_id(body, end)
        if uuid is None:
            return None
        return LazyEvent(name, self.node, uuid, body, end, self.account_key)

    def decode(self, body: bytes, name: str) -> CallEvent | None:
        """Every field at once (tests, tools); the daemon uses :meth:`lazy`."""
        ev = self.lazy(body, name)
        if ev is None:
            return None
        return CallEvent(name, self.node, ev.uuid, ev.account, ev.b_leg, ev.other_leg,
                         ev.destination, ev.caller_id, ev.source_ip, ev.context)
