"""A node's channel list for a reconciliation, over a short-lived ESL connection of its own.

Why not the event connection: FreeSWITCH runs an ``api`` command inline in the connection's
listener thread, so while a slow ``show channels`` runs (seconds on a busy switch: the core
database is shared, and it retries a locked database for ~30 s), that connection's events and
every later command wait behind it, ``uuid_kill`` included.  Why not ``bgapi`` on it: the
BACKGROUND_JOB event carrying the result is delivered to *every* listener subscribed to
BACKGROUND_JOB (seen on 1.10.12), so a 19 MB answer would go to each of them, and it would still
hold back our own events while it is written; a timed-out job would deliver it anyway.

A connection per reconciliation isolates all of that: hangups and events never wait for it, a
big answer is allowed only there (:data:`~esl_guard.frames.MAX_REPLY`, events keep the small
cap), its timeout (``resync_timeout``) simply closes it, and its read buffer is freed with it.
The cost is one TCP connect and ``auth`` per reconciliation (every ``resync_interval``).
"""
from __future__ import annotations

import gc
import logging
import re
from collections.abc import Callable

import gevent

from esl_guard.config import NodeConfig
from esl_guard.esl import BULK_PAUSE, ESLError, GuardESL
from esl_guard.frames import MAX_REPLY
from esl_guard.model import ChannelRow
from esl_guard.resync import ResyncError, answered_time, parse_channels

log = logging.getLogger(__name__)

#: first retry of a failed reconciliation after this many seconds, doubling up to resync_interval
RETRY_FIRST = 2.0

_SESSIONS = re.compile(r"^(\d+) session\(s\) - peak", re.MULTILINE)


def retry_delay(failures: int, interval: float) -> float:
    """Seconds before retrying a reconciliation that failed ``failures`` times in a row."""
    return min(interval, RETRY_FIRST * 2 ** max(0, failures - 1))


def fetch_channels(cfg: NodeConfig, account_variable: str, wall: Callable[[], float],
                   on_open: Callable[[GuardESL], object] | None = None,
                   needs_answer: Callable[[ChannelRow], bool] | None = None) -> list[ChannelRow]:
    """Connect, ``api show channels as json`` (within ``cfg.resync_timeout``), parse, close.

    The list has no answer time: for the rows ``needs_answer`` picks (answered calls that need
    timing, see ``policy.needs_answer_time``), ``api uuid_dump <uuid>`` on this same connection
    gives it.  Raises ESLError (connect, auth, timeout, dropped) or ResyncError (not a complete
    list).  ``on_open`` gets the connection first, so the caller can close it to abort.
    """
    conn = GuardESL(cfg.host, cfg.port, cfg.password, timeout=cfg.connect_timeout,
                    command_timeout=cfg.command_timeout, on_event=_ignore_event,
                    on_close=_ignore_close, max_reply=MAX_REPLY, bulk=True)
    if on_open is not None:
        on_open(conn)
    try:
        conn.connect()
        log.debug("node %s: asking for the channel list", cfg.name)
        reply = conn.send("api show channels as json", timeout=cfg.resync_timeout)
        rows = _parse(reply.body, wall(), account_variable)
        if not rows:
            _check_empty(conn)
        if account_variable != "accountcode":
            rows = [_lookup_account(conn, account_variable, row) for row in rows]
        if needs_answer is not None:
            rows = [_answer_time(conn, row) if needs_answer(row) else row for row in rows]
        return rows
    finally:
        conn.close("reconciliation done")


def _pause() -> None:
    """Between two chunks: a timer, so the hub polls the sockets (``sleep(0)`` would only run
    greenlets already ready, up to 50 of them, before the event connection is read again)."""
    gevent.sleep(BULK_PAUSE)


def _parse(body: str, wall_now: float, account_variable: str) -> list[ChannelRow]:
    """Parse in chunks, yielding to the hub between them; no cyclic GC meanwhile (its full
    passes over the rows being built would each hold the hub for tens of ms)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return parse_channels(body, wall_now, account_variable, pause=_pause)
    finally:
        if enabled:
            gc.enable()


def _check_empty(conn: GuardESL) -> None:
    """FreeSWITCH answers ``{"row_count": 0}`` also when its core database query failed (a
    database locked for ~30 s: "SQL ERR ... database is locked", seen on 1.10.12).  An empty
    list is believed only if ``status`` (the session counter, not the database) agrees."""
    text = conn.send("api status").body
    m = _SESSIONS.search(text)
    if m is None:
        raise ResyncError(f"empty channel list and no session count in `status`: {text[:80]!r}")
    if int(m.group(1)):
        raise ResyncError(f"`show channels` listed no channel but `status` counts "
                          f"{m.group(1)} sessions (core database busy?)")


def _lookup_account(conn: GuardESL, variable: str, row: ChannelRow) -> ChannelRow:
    if row.b_leg:
        return row
    value = conn.send(f"api uuid_getvar {row.uuid} {variable}").body.strip()
    if value.startswith("-ERR") or value in ("", "_undef_"):
        return row
    return ChannelRow(row.uuid, value, row.b_leg, row.answered, row.age)


def _answer_time(conn: GuardESL, row: ChannelRow) -> ChannelRow:
    at = answered_time(conn.send(f"api uuid_dump {row.uuid}").body)
    if at is None:
        return row
    return ChannelRow(row.uuid, row.account, row.b_leg, row.answered, row.age, at)


def _ignore_event(name: str, body: bytes) -> None:
    """Never subscribed: nothing comes."""


def _ignore_close(reason: str) -> None:
    """The caller learns of a drop from the pending command's ESLError."""


__all__ = ["ESLError", "ResyncError", "fetch_channels", "retry_delay"]
