"""The ``api``/``bgapi`` commands of the simulated switch (mod_commands, mod_hash subset:
``hash``, ``hash_dump``).

Answers are byte-for-byte the shapes seen in ``api_replies.bin``: ``+OK\\n``,
``-ERR No such channel!\\n``, ``-USAGE: <uuid> [cause]\\n``, ``-ERR <cmd> Command not found!\\n``,
an empty answer becomes ``-ERR no reply\\n`` (added by mod_event_socket).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from esl_guard.simulator.calls import CHANNEL_COLUMNS, call_row, channel_row, show_count, show_csv, show_json
from esl_guard.simulator.templates import format_uptime, now_us, parse_cause
from esl_guard.simulator.wire import api_response

if TYPE_CHECKING:
    from esl_guard.simulator.connection import Connection
    from esl_guard.simulator.server import FakeFreeSWITCH

Phase = Callable[[], None]
Result = tuple[bytes, list[Phase]]

VERSION = (b"FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit "
           b"(git a88d069 2024-08-02 21:02:27Z 64bit)\n")
HASH_USAGE = b"-ERR Usage: hash insert|insert_ifempty|select|delete|delete_ifmatch/realm/key[/value]\n"


def no_reply(body: bytes) -> bytes:
    return body if body else b"-ERR no reply\n"


def frame_api(body: bytes) -> bytes:
    return api_response(no_reply(body))


def execute(fs: FakeFreeSWITCH, line: str, conn: Connection | None = None) -> Result:
    """Run one api command line; returns (answer, phases to run after the answer is sent)."""
    command, _, args = line.strip().partition(" ")
    args = args.strip()
    if command in fs.fail_api:
        return b"-ERR simulated failure\n", []
    handler = _APIS.get(command)
    if handler is None:
        return f"-ERR {command} Command not found!\n".encode("utf-8", "surrogateescape"), []
    return handler(fs, args)


def _status(fs: FakeFreeSWITCH, args: str) -> Result:
    up = format_uptime(now_us() - fs.started_us)
    text = (
        f"UP {up}\n"
        "FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"
        f"{fs._session_counter} session(s) since startup\n"
        f"{len(fs._channels)} session(s) - peak {fs.peak_sessions}, last 5min {fs.peak_sessions} \n"
        "0 session(s) per Sec out of max 30, peak 6, last 5min 6 \n"
        "1000 session(s) max\n"
        "min idle cpu 0.00/97.50\n"
        "Current Stack Size/Max 240K/8192K\n"
    )
    return text.encode(), []


def _global_getvar(fs: FakeFreeSWITCH, args: str) -> Result:
    """Only ``core_uuid`` is known; FreeSWITCH answers an unset variable with an empty body."""
    return (fs.core_uuid if args == "core_uuid" else "").encode(), []


def _show(fs: FakeFreeSWITCH, args: str) -> Result:
    words = args.split()
    if not words:
        return b"-USAGE: codec|endpoint|application|api|channels|calls|...\n", []
    what = words[0].lower()
    rest = [w.lower() for w in words[1:]]
    channels = ([] if fs.db_busy else fs.db_view if fs.db_view is not None
                else fs.live_channels())
    if what == "channels":
        if rest[:1] == ["count"]:
            return show_count(len(channels)), []
        rows = [channel_row(ch, fs.hostname) for ch in channels]
    elif what == "calls":
        a_legs = [ch for ch in channels if ch.leg == "A"]
        if rest[:1] == ["count"]:
            return show_count(len(a_legs)), []
        rows = [call_row(a, fs._channels.get(a.other) if a.other else None, fs.hostname)
                for a in a_legs]
    else:
        return f"-ERR Cannot find {what}\n".encode(), []
    if rest[:2] == ["as", "json"]:
        return show_json(rows), []
    columns = CHANNEL_COLUMNS if what == "channels" else tuple(rows[0].keys()) if rows else ()
    return show_csv(rows, columns), []


def _uuid_kill(fs: FakeFreeSWITCH, args: str) -> Result:
    words = args.split()
    if not words:
        return b"-USAGE: <uuid> [cause]\n", []
    uid = words[0]
    if uid not in fs._channels:
        return b"-ERR No such channel!\n", []
    return b"+OK\n", fs.kill(uid, words[1] if len(words) > 1 else "NORMAL_CLEARING")


def _uuid_exists(fs: FakeFreeSWITCH, args: str) -> Result:
    return (b"true" if args.split()[:1] and args.split()[0] in fs._channels else b"false"), []


def _uuid_dump(fs: FakeFreeSWITCH, args: str) -> Result:
    """The plain form only (as in uuid_dump_answered.bin): the channel's event headers."""
    words = args.split()
    if not words:
        return b"-USAGE: <uuid> [format]\n", []
    ch = fs._channels.get(words[0])
    if ch is None:
        return b"-ERR No such channel!\n", []
    return fs.dump(ch), []


def _uuid_getvar(fs: FakeFreeSWITCH, args: str) -> Result:
    words = args.split()
    if len(words) < 2:
        return b"-USAGE: <uuid> <var>\n", []
    ch = fs._channels.get(words[0])
    if ch is None:
        return b"-ERR No such channel!\n", []
    if words[1] == ch.variable and ch.account_known and ch.account is not None:
        return ch.account.encode("utf-8", "surrogateescape"), []
    if ch.extra_vars and words[1] in ch.extra_vars:
        return str(ch.extra_vars[words[1]]).encode("utf-8", "surrogateescape"), []
    return b"_undef_", []


def _hupall(fs: FakeFreeSWITCH, args: str) -> Result:
    """``hupall [cause] [var value]``: with no (or an empty) value it ends EVERY call."""
    words = args.split()
    cause = parse_cause(words[0] if words else None)
    var = words[1] if len(words) > 1 else None
    value = words[2] if len(words) > 2 else None
    victims = []
    for ch in fs.live_channels():
        if ch.leg != "A":
            continue
        if var and value:
            have = ch.account if (var == ch.variable and ch.account_known) else None
            if have is None and ch.extra_vars:
                have = ch.extra_vars.get(var)
            if have != value:
                continue
        victims.append(ch.uuid)

    def run() -> None:
        for uid in victims:
            fs.hangup(uid, cause)
    return f"+OK hangup all channels with cause {cause}\n".encode(), [run]


def _hash(fs: FakeFreeSWITCH, args: str) -> Result:
    parts = args.split("/", 3)
    if len(parts) < 3 or not parts[0]:
        return HASH_USAGE, []
    op, realm, key = parts[0].lower(), parts[1], parts[2]
    value = parts[3] if len(parts) > 3 else None
    table = fs.hash.get(realm, {})
    if op in ("insert", "insert_ifempty"):
        if value is None:
            return HASH_USAGE, []
        if op == "insert_ifempty" and key in table:
            return b"-ERR key already exists\n", []
        fs.hash.setdefault(realm, {})[key] = value
        return b"+OK\n", []
    if op in ("delete", "delete_ifmatch"):
        if op == "delete_ifmatch" and value is None:
            return HASH_USAGE, []
        if key not in table:
            return b"-ERR Not found\n", []
        if op == "delete_ifmatch" and table[key] != value:
            return b"-ERR Doesn't match\n", []
        del table[key]
        if not table:
            fs.hash.pop(realm, None)
        return b"+OK\n", []
    if op == "select":
        return table.get(key, "").encode("utf-8", "surrogateescape"), []
    return HASH_USAGE, []


HASH_DUMP_USAGE = b"Usage: all|limit|db [<realm>]\n"


def _hash_dump(fs: FakeFreeSWITCH, args: str) -> Result:
    """``hash_dump all|limit|db [<realm>]`` as mod_hash prints it (``hash_dump.bin``): one
    ``D/<realm>_<key>/<value>`` line per entry whose stored name ``<realm>_<key>`` CONTAINS
    ``<realm>_``; nothing (so ``-ERR no reply``) when empty.  There are no limit entries here."""
    words = args.split(" ")
    if not args or words[0] not in ("all", "limit", "db"):
        return HASH_DUMP_USAGE, []
    if words[0] == "limit":
        return b"", []
    realm = f"{words[1]}_" if len(words) == 2 else ""
    lines = [f"D/{name}_{key}/{value}\n" for name, table in fs.hash.items()
             for key, value in table.items() if realm in f"{name}_{key}"]
    return "".join(lines).encode("utf-8", "surrogateescape"), []


def _version(fs: FakeFreeSWITCH, args: str) -> Result:
    return VERSION, []


def _shutdown(fs: FakeFreeSWITCH, args: str) -> Result:
    return b"+OK\n", [fs.restart]


_APIS: dict[str, Callable[[FakeFreeSWITCH, str], Result]] = {
    "status": _status, "show": _show, "global_getvar": _global_getvar,
    "uuid_kill": _uuid_kill, "uuid_exists": _uuid_exists, "uuid_getvar": _uuid_getvar,
    "uuid_dump": _uuid_dump, "hupall": _hupall, "hash": _hash,
    "hash_dump": _hash_dump, "version": _version, "shutdown": _shutdown,
}
