"""``show channels as json`` -> ChannelRows.  Pure, no I/O.

An answer can be big (~950 bytes a channel: 19 MB for 20,000 channels) and ``json.loads`` of it
holds the interpreter for half a second.  :func:`parse_channels` therefore decodes the top-level
object itself and each row with the standard library's decoder (``raw_decode``), calling
``pause`` every :data:`CHUNK` rows: the caller yields to its hub there so events of other
calls are handled between chunks.  The result is exactly what ``json.loads`` would accept.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Container
from typing import Any

from esl_guard.model import ChannelRow
from esl_guard.safety import is_uuid

#: callstates of channels that are going away: their HANGUP event may already have been seen.
_ENDING_CALLSTATES = {"HANGUP"}
_ENDING_STATES = {"CS_HANGUP", "CS_REPORTING", "CS_DESTROY"}
_ANSWERED = {"ACTIVE", "HELD"}

#: rows decoded between two calls of ``pause`` (~5 ms of work)
CHUNK = 250

_WS = re.compile(r"[ \t\n\r]*")
_DECODE = json.JSONDecoder().raw_decode


_ANSWERED_TIME = re.compile(r"^Caller-Channel-Answered-Time: (\d+)$", re.MULTILINE)


def answered_time(dump: str) -> float | None:
    """The answer time (epoch seconds, µs precision) in a plain ``uuid_dump <uuid>`` answer
    (``Caller-Channel-Answered-Time``, µs since the epoch); None when the channel is not
    answered (0), gone (``-ERR No such channel!``) or the field is missing."""
    m = _ANSWERED_TIME.search(dump)
    if m is None or m.group(1) == "0":
        return None
    return int(m.group(1)) / 1_000_000


def _loopback_b(name: object) -> bool:
    """The B side of a loopback/ pair (mod_loopback names it ``loopback/DEST-b``): inbound,
    with the account and no call_uuid, yet part of the call that originated the pair; the
    row has nothing else that tells (tests/fixtures/esl/plain_loopback.bin)."""
    return isinstance(name, str) and name.startswith("loopback/") and name.endswith("-b")


#: A reconciliation leaves a channel it does not know to its events while it is this young.
ADOPT_AFTER = 5.0


def not_too_new(rows: list[ChannelRow], known: Container[str], min_age: float = ADOPT_AFTER
                ) -> list[ChannelRow]:
    """The rows a periodic reconciliation applies.  FreeSWITCH can write an api/response ahead
    of events it has queued for the same connection, so ``show channels`` may list (with its
    account) a call whose CHANNEL_CREATE is still on its way.  Adopted from the answer, such a
    call would skip the policy; left out, its events bring it in and put it through the
    policy.  A channel whose events never come is adopted by a later reconciliation.  The
    caller lowers ``min_age`` to the age of its event connection: a call older than that
    started before the subscription, so no CHANNEL_CREATE of it is on its way."""
    return [r for r in rows if r.uuid in known or r.age >= min_age]


class ResyncError(Exception):
    """The answer is not a complete channel list: the resync must change nothing."""


def parse_channels(body: str, wall_now: float, account_variable: str = "accountcode",
                   pause: Callable[[], object] | None = None) -> list[ChannelRow]:
    """Parse a ``show channels as json`` reply.  Raises ResyncError unless it is complete.

    The account comes from the ``accountcode`` column; for another ``account_variable`` the
    rows carry no account (the caller looks it up with ``uuid_getvar``).  ``pause`` is called
    every :data:`CHUNK` rows.
    """
    text = body.strip()
    if not text.startswith("{"):
        raise ResyncError(f"not a channel list: {text[:80]!r}")
    try:
        doc = _decode_object(text, pause)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ResyncError(f"invalid JSON: {exc}") from None
    if not isinstance(doc.get("row_count"), int) or isinstance(doc["row_count"], bool):
        raise ResyncError("no row_count in the channel list")
    rows = doc.get("rows", [])
    if not isinstance(rows, list) or len(rows) != doc["row_count"]:
        got = len(rows) if isinstance(rows, list) else "no"
        raise ResyncError(f"row_count {doc['row_count']} but {got} rows")
    out: list[ChannelRow] = []
    rows.reverse()  # taken from the end: each row is freed once converted, not all at the end
    while rows:
        row = rows.pop()
        if pause is not None and len(rows) % CHUNK == 0:
            pause()
        if not isinstance(row, dict):
            raise ResyncError("a row is not an object")
        parsed = _channel_row(row, wall_now, account_variable)
        if parsed is not None:
            out.append(parsed)
    return out


def _channel_row(row: dict[str, Any], wall_now: float, account_variable: str) -> ChannelRow | None:
    uuid = row.get("uuid")
    if not isinstance(uuid, str) or not is_uuid(uuid):
        return None  # never tracked, never killed: nothing we could act on safely
    if row.get("callstate") in _ENDING_CALLSTATES or row.get("state") in _ENDING_STATES:
        return None
    call_uuid = row.get("call_uuid") or ""
    b_leg = (row.get("direction") == "outbound" and bool(call_uuid) and call_uuid != uuid
             or _loopback_b(row.get("name")))
    account = row.get("accountcode") if account_variable == "accountcode" else None
    try:
        created = float(row.get("created_epoch") or wall_now)
    except (TypeError, ValueError):
        created = wall_now
    dest = row.get("dest")
    return ChannelRow(uuid, account or None, b_leg, row.get("callstate") in _ANSWERED,
                      max(0.0, wall_now - created),
                      destination=dest if isinstance(dest, str) and dest else None,
                      parent=call_uuid if b_leg and call_uuid else None)


def _skip(text: str, pos: int) -> int:
    """The position after the whitespace at ``pos``."""
    m = _WS.match(text, pos)
    return pos if m is None else m.end()


def _decode_object(text: str, pause: Callable[[], object] | None) -> dict[str, Any]:
    """The top-level JSON object of ``text``; a ``rows`` array in it is decoded row by row."""
    ws = _skip
    pos = ws(text, 1)
    doc: dict[str, Any] = {}
    if text.startswith("}", pos):
        pos += 1
    else:
        while True:
            key, pos = _DECODE(text, pos)
            if not isinstance(key, str):
                raise ValueError(f"expected a key at {pos}")
            pos = ws(text, pos)
            if not text.startswith(":", pos):
                raise ValueError(f"expected ':' at {pos}")
            pos = ws(text, pos + 1)
            if key == "rows" and text.startswith("[", pos):
                doc[key], pos = _decode_array(text, pos + 1, pause)
            else:
                doc[key], pos = _DECODE(text, pos)
            pos = ws(text, pos)
            if text.startswith(",", pos):
                pos = ws(text, pos + 1)
                continue
            if text.startswith("}", pos):
                pos += 1
                break
            raise ValueError(f"expected ',' or '}}' at {pos}")
    if pos != len(text):
        raise ValueError(f"extra data at {pos}")
    return doc


def _decode_array(text: str, pos: int, pause: Callable[[], object] | None
                  ) -> tuple[list[Any], int]:
    ws = _skip
    items: list[Any] = []
    pos = ws(text, pos)
    if text.startswith("]", pos):
        return items, pos + 1
    while True:
        item, pos = _DECODE(text, pos)
        items.append(item)
        if pause is not None and len(items) % CHUNK == 0:
            pause()
        pos = ws(text, pos)
        if text.startswith(",", pos):
            pos = ws(text, pos + 1)
            continue
        if text.startswith("]", pos):
            return items, pos + 1
        raise ValueError(f"expected ',' or ']' at {pos}")
