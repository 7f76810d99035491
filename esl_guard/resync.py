"""``show channels as json`` -> ChannelRows.  Pure, no I/O."""
from __future__ import annotations

import json
from collections.abc import Container

from esl_guard.safety import is_uuid
from esl_guard.tracker import ChannelRow

#: callstates of channels that are going away: their HANGUP event may already have been seen.
_ENDING_CALLSTATES = {"HANGUP"}
_ENDING_STATES = {"CS_HANGUP", "CS_REPORTING", "CS_DESTROY"}
_ANSWERED = {"ACTIVE", "HELD"}


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
    policy.  A channel whose events never come is adopted by a later reconciliation."""
    return [r for r in rows if r.uuid in known or r.age >= min_age]


class ResyncError(Exception):
    """The answer is not a complete channel list: the resync must change nothing."""


def parse_channels(body: str, wall_now: float, account_variable: str = "accountcode"
                   ) -> list[ChannelRow]:
    """Parse a ``show channels as json`` reply.  Raises ResyncError unless it is complete.

    The account comes from the ``accountcode`` column; for another ``account_variable`` the
    rows carry no account (the caller looks it up with ``uuid_getvar``).
    """
    text = body.strip()
    if not text.startswith("{"):
        raise ResyncError(f"not a channel list: {text[:80]!r}")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ResyncError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("row_count"), int):
        raise ResyncError("no row_count in the channel list")
    rows = doc.get("rows", [])
    if not isinstance(rows, list) or len(rows) != doc["row_count"]:
        got = len(rows) if isinstance(rows, list) else "no"
        raise ResyncError(f"row_count {doc['row_count']} but {got} rows")
    out: list[ChannelRow] = []
    for row in rows:
        if not isinstance(row, dict):
            raise ResyncError("a row is not an object")
        uuid = row.get("uuid")
        if not isinstance(uuid, str) or not is_uuid(uuid):
            continue  # never tracked, never killed: nothing we could act on safely
        if row.get("callstate") in _ENDING_CALLSTATES or row.get("state") in _ENDING_STATES:
            continue
        call_uuid = row.get("call_uuid") or ""
        b_leg = (row.get("direction") == "outbound" and bool(call_uuid) and call_uuid != uuid
                 or _loopback_b(row.get("name")))
        account = row.get("accountcode") if account_variable == "accountcode" else None
        try:
            created = float(row.get("created_epoch") or wall_now)
        except (TypeError, ValueError):
            created = wall_now
        out.append(ChannelRow(uuid, account or None, b_leg, row.get("callstate") in _ANSWERED,
                              max(0.0, wall_now - created)))
    return out
