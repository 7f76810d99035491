"""FakeFreeSWITCH: a simulated FreeSWITCH event socket (inbound mode) on real TCP, pure gevent.

Behaviour and byte shapes follow real FreeSWITCH 1.10.12 captures (``tests/fixtures/esl``).
Everything runs in greenlets of the caller's hub; nothing is monkey-patched.
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.server import StreamServer

from esl_guard.simulator import api as api_mod
from esl_guard.simulator.calls import Channel
from esl_guard.simulator.connection import Connection
from esl_guard.simulator.templates import (
    event_header_values,
    format_uptime,
    frame,
    now_us,
    parse_cause,
    q850,
    render_body,
    template_for,
    time_values,
    vars_block,
)
from esl_guard.simulator.wire import (
    SHUTDOWN_NOTICE_BODY,
    command_reply,
    disconnect_notice,
    fs_url_decode,
    fs_url_encode,
    parse_plain_body,
)

log = logging.getLogger(__name__)

Phase = Callable[[], None]


#: the lines of a `uuid_dump` answer that differ from the channel's events
#: (tests/fixtures/esl/uuid_dump_answered.bin)
_DUMP_HEADERS = {
    b"Event-Name": b"CHANNEL_DATA",
    b"Event-Calling-File": b"mod_commands.c",
    b"Event-Calling-Function": b"uuid_dump_function",
    b"Event-Calling-Line-Number": b"6468",
}


class FakeFreeSWITCH:
    """A fake FreeSWITCH speaking the event socket protocol on ``host:port`` (``port=0``: any)."""

    def __init__(self, password: str = "ClueCon", host: str = "127.0.0.1", port: int = 0,
                 hostname: str = "sim", heartbeat_interval: float | None = None) -> None:
        self.password = password
        self.host = host
        self.port = port
        self.hostname = hostname
        self.heartbeat_interval = heartbeat_interval
        self.commands: list[str] = []
        self.kills: list[tuple[str, str]] = []
        self.hash: dict[str, dict[str, str]] = {}
        self.api_delay: float = 0.0
        self.fail_api: set[str] = set()
        #: socket commands answered `-ERR command not found` (a peer that lacks them)
        self.refuse_commands: set[str] = set()
        self.holds: list[ApiHold] = []
        self.accepted = 0  # connections accepted, ever
        self.drop_after_subscribe = False
        # its core database locked: `show channels/calls` list nothing (as FreeSWITCH answers
        # after ~30 s of "SQLite is BUSY"), while `status` still counts the sessions
        self.db_busy = False
        # its core database lagging behind events: `show channels/calls` list the channels
        # as they were at lag_db() until catch_up_db()
        self.db_view: list[Channel] | None = None
        self.command_log: list[tuple[str, str]] = []  # (client address, command)
        self.log_commands = False
        self._channels: dict[str, Channel] = {}
        self._conns: set[Connection] = set()
        self._server: StreamServer | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self._boot()

    def _boot(self) -> None:
        self.core_uuid = str(uuidlib.uuid4())
        self.started_us = now_us()
        self._seq = 480  # a freshly started FreeSWITCH has already fired a few hundred events
        self._session_counter = 0
        self.peak_sessions = 0

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeFreeSWITCH:
        self._server = StreamServer((self.host, self.port), self._handle, spawn=Pool())
        self._server.init_socket()
        self._server.start()
        self.port = self._server.server_port
        if self.heartbeat_interval:
            self._heartbeat = gevent.spawn(self._heartbeat_loop, self.heartbeat_interval)
        log.info("fake FreeSWITCH listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
            self._heartbeat = None
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop accepting first
        for conn in list(self._conns):
            conn.abort(reset=False)
            conn.kill()
        if server is not None:
            server.stop(timeout=1)  # reap the handler greenlets
        self._conns.clear()

    def __enter__(self) -> FakeFreeSWITCH:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _heartbeat_loop(self, interval: float) -> None:
        while True:
            gevent.sleep(interval)
            self.heartbeat()

    def _handle(self, sock, addr) -> None:  # type: ignore[no-untyped-def]
        self.accepted += 1
        conn = Connection(sock, addr, self._run_command, self._record)
        self._conns.add(conn)
        try:
            conn.read_loop()
            conn.join(timeout=5)
        finally:
            self._conns.discard(conn)

    def _record(self, conn: Connection, block: str) -> None:
        self.commands.append(block)
        self.command_log.append((str(conn.addr), block))
        if self.log_commands:
            log.info("%s> %s", conn.addr, block.replace("\n", "\\n"))

    # ---- introspection -----------------------------------------------------------------------
    @property
    def connections(self) -> int:
        return sum(1 for c in self._conns if c.authed and not c.closed and not c.closing)

    def calls(self) -> dict[str, dict[str, object]]:
        return {u: ch.info() for u, ch in self._channels.items()}

    def channel(self, uuid: str) -> Channel:
        return self._channels[uuid]

    def live_channels(self) -> list[Channel]:
        return list(self._channels.values())

    def emit(self, name: str, ch: Channel) -> None:
        """Send event ``name`` of ``ch`` (see :meth:`channel`) now, even after it ended: a late
        event, as FreeSWITCH's event threads can deliver them."""
        self._emit_channel(name, ch)

    def lag_db(self) -> None:
        """From now on `show channels` lists the channels live now (a database lagging
        behind the events), until :meth:`catch_up_db`."""
        self.db_view = self.live_channels()

    def catch_up_db(self) -> None:
        self.db_view = None

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        deadline = gevent.get_hub().loop.now() + timeout
        while True:
            if predicate():
                return True
            if gevent.get_hub().loop.now() >= deadline:
                return bool(predicate())
            gevent.sleep(0.002)

    # ---- slow answers and network faults -------------------------------------------------------
    def hold_api(self, prefix: str, count: int | None = None) -> ApiHold:
        """Make the next ``count`` (default: every) ``api`` commands starting with ``prefix``
        (e.g. ``"show channels"``) wait until ``release()``: a slow answer with no clock.  As in
        FreeSWITCH, a held ``api`` also holds back that connection's later commands and events."""
        hold = ApiHold(prefix, count)
        self.holds.append(hold)
        return hold

    def _wait_holds(self, line: str) -> None:
        for hold in list(self.holds):
            if not line.startswith(hold.prefix):
                continue
            hold.seen += 1
            if hold.remaining == 0:
                continue
            hold.remaining -= 1
            hold.waiting += 1
            try:
                hold.released.wait()
            finally:
                hold.waiting -= 1
                hold.answered += 1

    def drop_connections(self, reset: bool = True) -> None:
        """Cut every client socket at once (RST by default), like a network failure."""
        for conn in list(self._conns):
            conn.abort(reset=reset)

    def send_raw(self, data: bytes) -> None:
        for conn in list(self._conns):
            conn.send(data)

    def restart(self) -> None:
        """FreeSWITCH going down and coming back: calls end with SYSTEM_SHUTDOWN, every client gets
        the shutdown notice and is closed, mod_hash is emptied; the listener stays open. The new
        instance has a new Core-UUID and its Event-Sequence starts again from a low number."""
        self._emit_simple("SHUTDOWN")
        for ch in [c for c in self._channels.values() if c.leg == "A"]:
            if ch.uuid in self._channels:
                for phase in self._end_phases(ch.uuid, "SYSTEM_SHUTDOWN", killed=True,
                                              other_cause="SYSTEM_SHUTDOWN"):
                    phase()
        notice = disconnect_notice(SHUTDOWN_NOTICE_BODY)
        for conn in list(self._conns):
            conn.send(notice)
            conn.close_after_flush()
        self.hash.clear()
        self._boot()

    def crash(self) -> None:
        """FreeSWITCH killed (SIGKILL) and started again: its calls vanish without one event,
        every client connection is reset, mod_hash is emptied; the listener stays open and the
        new instance has a new Core-UUID."""
        self._channels.clear()
        self.drop_connections(reset=True)
        self.hash.clear()
        self._boot()

    # ---- calls -------------------------------------------------------------------------------
    def create_call(self, account: str | None = "acme", *, uuid: str | None = None,
                    account_on: str = "create", dest: str = "9001", direction: str = "inbound",
                    variable: str = "accountcode", extra_vars: Mapping[str, str] | None = None,
                    caller: str | None = None, caller_id: str | None = None,
                    source_ip: str = "127.0.0.1", context: str = "public") -> str:
        """Start an inbound call (CHANNEL_CREATE). ``account_on``: "create" (directory user: the
        variable is on CREATE) or "answer" (dialplan ``set``: first on ANSWER/HANGUP).
        ``caller_id`` (default: the caller), ``source_ip`` and ``context`` are the A-leg's
        ``Caller-Caller-ID-Number``, network address and ``Caller-Context``."""
        if account_on not in ("create", "answer"):
            raise ValueError("account_on must be 'create' or 'answer'")
        uid = uuid or str(uuidlib.uuid4())
        if uid in self._channels:
            raise ValueError(f"channel {uid} already exists")
        ch = self._new_channel(
            uid, "A", account, account is not None and account_on == "create", variable,
            caller if caller is not None else (account if account else "anonymous"),
            dest, direction, dict(extra_vars) if extra_vars else None,
            caller_id=caller_id, ip=source_ip, context=context)
        self._emit_channel("CHANNEL_CREATE", ch)
        return uid

    def answer(self, uuid: str) -> None:
        ch = self._channels[uuid]
        if ch.answered:
            return
        ch.answered_us = now_us()
        self._learn_account(ch)
        self._emit_channel("CHANNEL_ANSWER", ch)

    def bridge(self, uuid: str, b_account: str | None = None) -> str:
        """Bridge the A-leg ``uuid`` to a new outbound B-leg; returns the B-leg uuid."""
        a = self._channels[uuid]
        if a.leg != "A" or a.other is not None:
            raise ValueError(f"{uuid} is not an unbridged A-leg")
        b = self._new_channel(str(uuidlib.uuid4()), "B", b_account, b_account is not None,
                              a.variable, a.caller, a.dest, "outbound", None)
        a.other, b.other = b.uuid, a.uuid
        self._emit_channel("CHANNEL_CREATE", b)
        b.answered_us = now_us()
        self._emit_channel("CHANNEL_ANSWER", b)
        if not a.answered:
            a.answered_us = b.answered_us
            self._learn_account(a)
            self._emit_channel("CHANNEL_ANSWER", a)
        a.bridged = True
        self._emit_channel("CHANNEL_BRIDGE", a)
        return b.uuid

    def attended_transfer(self, uuid: str) -> str:
        """An attended transfer by the bridged A-leg ``uuid`` (att_xfer, as in
        tests/fixtures/esl/plain_att_xfer.bin): B2 is originated from A (an outbound leg whose
        Other-Leg-Unique-ID is A), A hangs up alone, and its B-leg B1 is bridged to B2.
        Returns B2's uuid; ending either remaining leg ends both."""
        a = self._channels[uuid]
        b1 = self._channels[a.other] if a.leg == "A" and a.other else None
        if b1 is None:
            raise ValueError(f"{uuid} is not a bridged A-leg")
        b2 = self._new_channel(str(uuidlib.uuid4()), "B", None, False, a.variable, a.caller,
                               a.dest, "outbound", None)
        b2.other = a.uuid
        self._emit_channel("CHANNEL_CREATE", b2)
        b2.answered_us = now_us()
        self._emit_channel("CHANNEL_ANSWER", b2)
        self._hang(a, "NORMAL_CLEARING", False, "")
        for name in ("CHANNEL_HANGUP", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP_COMPLETE",
                     "CHANNEL_DESTROY"):
            self._emit_channel(name, a)
        del self._channels[a.uuid]
        b1.other, b2.other = b2.uuid, b1.uuid
        return b2.uuid

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """End a call (both legs if bridged). Returns False when ``uuid`` is not live."""
        if uuid not in self._channels:
            return False
        for phase in self._end_phases(uuid, parse_cause(cause), killed=False):
            phase()
        return True

    def kill(self, uuid: str, cause: str = "NORMAL_CLEARING") -> list[Phase]:
        """What ``uuid_kill`` does: record it and return the hangup phases still to run
        (first phase: the killed leg's CHANNEL_HANGUP; the rest: everything after it)."""
        the_cause = parse_cause(cause)
        self.kills.append((uuid, the_cause))
        return self._end_phases(uuid, the_cause, killed=True)

    def heartbeat(self) -> None:
        self._emit_simple("HEARTBEAT")

    # ---- internals: channels -----------------------------------------------------------------
    def _new_channel(self, uid: str, leg: str, account: str | None, known: bool, variable: str,
                     caller: str, dest: str, direction: str,
                     extra_vars: dict[str, str] | None, caller_id: str | None = None,
                     ip: str = "127.0.0.1", context: str = "public") -> Channel:
        self._session_counter += 1
        ch = Channel(uuid=uid, leg=leg, account=account, account_known=known, variable=variable,
                     caller=caller, dest=dest, direction=direction, extra_vars=extra_vars,
                     port=12000 + (self._session_counter * 10) % 20000,
                     session_id=self._session_counter, created_us=now_us(),
                     caller_id=caller_id, ip=ip, context=context)
        ch.build_static()
        self._channels[uid] = ch
        self.peak_sessions = max(self.peak_sessions, len(self._channels))
        return ch

    @staticmethod
    def _learn_account(ch: Channel) -> None:
        if ch.account is not None:
            ch.account_known = True

    def _end_phases(self, uuid: str, cause: str, *, killed: bool,
                    other_cause: str = "NORMAL_CLEARING") -> list[Phase]:
        ch = self._channels[uuid]
        other = self._channels.get(ch.other) if ch.other else None
        if other is None:
            def first() -> None:
                self._hang(ch, cause, killed, "")
                self._emit_channel("CHANNEL_HANGUP", ch)

            def rest() -> None:
                self._emit_channel("CHANNEL_HANGUP_COMPLETE", ch)
                self._emit_channel("CHANNEL_DESTROY", ch)
                self._channels.pop(ch.uuid, None)
            return [first, rest]
        a, b = (ch, other) if ch.leg == "A" else (other, ch)
        first_leg, second_leg = ch, other
        cause_first, cause_second = cause, other_cause

        def first_bridged() -> None:
            self._hang(first_leg, cause_first, killed, cause_second)
            self._emit_channel("CHANNEL_HANGUP", first_leg)

        def rest_bridged() -> None:
            self._hang(second_leg, cause_second, killed, cause_first)
            self._emit_channel("CHANNEL_HANGUP", second_leg)
            if killed:  # order seen for `uuid_kill <A-leg>` in plain_bridged
                if a.bridged:
                    self._emit_channel("CHANNEL_UNBRIDGE", a)
                self._emit_channel("CHANNEL_HANGUP_COMPLETE", b)
                self._emit_channel("CHANNEL_HANGUP_COMPLETE", a)
                self._emit_channel("CHANNEL_DESTROY", a)
                self._emit_channel("CHANNEL_DESTROY", b)
            else:  # order seen when the caller hangs up (3 of the 5 bridged calls)
                self._emit_channel("CHANNEL_HANGUP_COMPLETE", b)
                if a.bridged:
                    self._emit_channel("CHANNEL_UNBRIDGE", a)
                self._emit_channel("CHANNEL_DESTROY", b)
                self._emit_channel("CHANNEL_HANGUP_COMPLETE", a)
                self._emit_channel("CHANNEL_DESTROY", a)
            self._channels.pop(a.uuid, None)
            self._channels.pop(b.uuid, None)
        return [first_bridged, rest_bridged]

    def _hang(self, ch: Channel, cause: str, killed: bool, other_cause: str) -> None:
        ch.hangup_us = now_us()
        ch.cause = cause
        ch.static["other_cause"] = other_cause or "NORMAL_CLEARING"
        if not ch.answered:
            ch.static["disposition"] = "send_refuse"
        else:
            ch.static["disposition"] = "send_bye" if killed else "recv_bye"
        self._learn_account(ch)

    # ---- internals: events -------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def dump(self, ch: Channel) -> bytes:
        """``uuid_dump``'s plain answer: the headers of the channel's latest event, as
        CHANNEL_DATA from mod_commands (Caller-Channel-Answered-Time included)."""
        body = self._render("CHANNEL_ANSWER" if ch.answered else "CHANNEL_CREATE", ch,
                            self._next_seq())
        lines = body.split(b"\n")
        for i, line in enumerate(lines):
            key = line.partition(b": ")[0]
            if key in _DUMP_HEADERS:
                lines[i] = key + b": " + _DUMP_HEADERS[key]
            elif key == b"Channel-Call-State":
                lines[i] = b"Channel-Call-State: " + (b"ACTIVE" if ch.answered else b"RINGING")
        return b"\n".join(lines)

    def _emit_channel(self, name: str, ch: Channel) -> None:
        seq = self._next_seq()
        targets = [c for c in self._conns if c.wants(name)]
        if not targets:
            return
        self._deliver(targets, self._render(name, ch, seq))

    def _render(self, name: str, ch: Channel, seq: int) -> bytes:
        ts = now_us()
        values = event_header_values(seq, ts, self.core_uuid, self.hostname)
        values.update(ch.static)
        kind = ch.kind()
        if kind == "B":
            values["a"], values["b"] = ch.other or "", ch.uuid
        else:
            values["a"], values["b"] = ch.uuid, ch.other or ""
        hung = ch.hangup_us if name not in ("CHANNEL_CREATE", "CHANNEL_ANSWER",
                                            "CHANNEL_BRIDGE") else 0
        values.update(time_values(ch.created_us, ch.answered_us, hung))
        cause = ch.cause or "NORMAL_CLEARING"
        values["cause"] = cause
        values["q850"] = str(q850(cause))
        values.setdefault("other_cause", "NORMAL_CLEARING")
        values.setdefault("disposition", "recv_bye")
        values["vars"] = vars_block(ch.visible_account(), ch.variable, ch.extra_vars)
        return render_body(template_for(name, kind), values)

    def _emit_simple(self, name: str) -> None:
        seq = self._next_seq()
        targets = [c for c in self._conns if c.wants(name)]
        if not targets:
            return
        ts = now_us()
        values = event_header_values(seq, ts, self.core_uuid, self.hostname)
        sessions = len(self._channels)
        values.update(uptime=fs_url_encode(format_uptime(ts - self.started_us)),
                      uptime_ms=str((ts - self.started_us) // 1000), sessions=str(sessions),
                      since_startup=str(self._session_counter), peak=str(self.peak_sessions))
        self._deliver(targets, render_body(name, values))

    def emit_background_job(self, job_uuid: str, command: str, arg: str, result: bytes) -> None:
        seq = self._next_seq()
        targets = [c for c in self._conns if c.wants("BACKGROUND_JOB")]
        if not targets:
            return
        values = event_header_values(seq, now_us(), self.core_uuid, self.hostname)
        values.update(job_uuid=job_uuid, job_command=fs_url_encode(command) or "_undef_",
                      job_arg=f"Job-Command-Arg: {fs_url_encode(arg)}\n" if arg else "")
        head = render_body("BACKGROUND_JOB", values)
        body = head + b"Content-Length: %d\n\n" % len(result) + result
        self._deliver(targets, body)

    def _deliver(self, targets: Iterable[Connection], body: bytes) -> None:
        framed: dict[str, bytes] = {}
        parsed: dict[str, str] | None = None

        def headers() -> dict[str, str]:
            nonlocal parsed
            if parsed is None:
                parsed = {k: fs_url_decode(v) for k, v in reversed(parse_plain_body(body))}
            return parsed

        for conn in targets:
            if conn.filters and not conn.passes_filters(headers):
                continue
            data = framed.get(conn.fmt)
            if data is None:
                data = framed[conn.fmt] = frame(body, conn.fmt)
            conn.send_event(data)

    # ---- commands ----------------------------------------------------------------------------
    def _run_command(self, conn: Connection, block: str) -> None:
        line, _, rest = block.partition("\n")
        line = line.strip()
        word, _, arg = line.partition(" ")
        word = word.lower()
        if not conn.authed:
            if word == "auth":
                if arg == self.password:
                    conn.authed = True
                    conn.send(command_reply("+OK accepted"))
                else:
                    conn.send(command_reply("-ERR invalid"))
                    conn.send(disconnect_notice())
                    conn.close_after_flush()
            elif word == "exit":
                self._bye(conn)
            else:
                conn.send(command_reply("-ERR command not found"))
            return
        handler = _COMMANDS.get(word)
        if handler is None or word in self.refuse_commands:
            conn.send(command_reply("-ERR command not found"))
            return
        handler(self, conn, arg.strip(), rest)

    def _bye(self, conn: Connection) -> None:
        conn.send(command_reply("+OK bye"))
        conn.send(disconnect_notice())
        conn.close_after_flush()


def _cmd_exit(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    fs._bye(conn)


def _cmd_auth(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    conn.send(command_reply("+OK accepted" if arg == fs.password else "-ERR invalid"))


def _cmd_event(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    words = arg.split()
    fmt = "plain"
    if words and words[0].lower() in ("plain", "json", "xml"):
        fmt = words.pop(0).lower()
    if fmt == "xml":
        conn.send(command_reply("-ERR xml events are not simulated"))
        return
    conn.fmt = fmt
    custom = False
    for name in words:
        upper = name.upper()
        if custom and upper != name:  # CUSTOM subclass names (e.g. sofia::register)
            continue
        if upper == "ALL":
            conn.all_events = True
        elif upper == "CUSTOM":
            custom = True
            conn.events.add(upper)
        else:
            conn.events.add(upper)
        conn.nixed.discard(upper)
    conn.send(command_reply(f"+OK event listener enabled {fmt}"))
    if fs.drop_after_subscribe:
        conn.close_after_flush()


def _cmd_noevents(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    conn.all_events = False
    conn.events.clear()
    conn.nixed.clear()
    conn.send(command_reply("+OK no longer listening for events"))


def _cmd_nixevent(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    for name in arg.split():
        upper = name.upper()
        if upper == "ALL":
            conn.all_events = False
            conn.events.clear()
        else:
            conn.events.discard(upper)
            if conn.all_events:
                conn.nixed.add(upper)
    conn.send(command_reply("+OK events nixed"))


def _cmd_myevents(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    words = arg.split()
    if not words:
        conn.send(command_reply("-ERR Usage: myevents <uuid> [plain|json|xml]"))
        return
    conn.all_events = True
    conn.fmt = words[1].lower() if len(words) > 1 and words[1].lower() == "json" else "plain"
    conn.filters.append(("Unique-ID", words[0]))
    conn.send(command_reply("+OK Events Enabled"))


def _cmd_filter(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    words = arg.split(None, 2)
    if words and words[0].lower() == "delete":
        header = words[1] if len(words) > 1 else ""
        value = words[2] if len(words) > 2 else ""
        if header.lower() == "all":
            conn.filters.clear()
        else:
            conn.filters = [(h, v) for h, v in conn.filters
                            if not (h == header and (not value or v == value))]
        conn.send(command_reply(f"+OK filter deleted. [{header}]=[{value}]"))
        return
    if len(words) < 2:
        conn.send(command_reply("-ERR invalid syntax"))
        return
    header, value = words[0], arg.split(None, 1)[1]
    conn.filters.append((header, value))
    conn.send(command_reply(f"+OK filter added. [{header}]=[{value}]"))


def _cmd_linger(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    conn.send(command_reply("+OK will linger"))


def _cmd_nolinger(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    conn.send(command_reply("+OK will not linger"))


def _cmd_sendmsg(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    headers = {}
    for line in rest.split("\n"):
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    uid = arg or headers.get("unique-id", "")
    if uid not in fs._channels:
        conn.send(command_reply(f"-ERR invalid session id [{uid}]"))
        return
    conn.send(command_reply("+OK"))
    if headers.get("call-command") == "hangup":
        cause = headers.get("hangup-cause", "NORMAL_CLEARING")
        # only queued in FreeSWITCH: the session thread hangs up a moment later
        gevent.spawn_later(0.001, fs.hangup, uid, cause)


def _cmd_api(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    if fs.holds:
        conn.hold_events()
    try:
        if fs.holds:
            fs._wait_holds(arg)
        if fs.api_delay > 0:
            gevent.sleep(fs.api_delay)
        body, phases = api_mod.execute(fs, arg, conn)
        conn.send(api_mod.frame_api(body))
    finally:
        conn.release_events()
    for phase in phases:
        phase()


def _cmd_bgapi(fs: FakeFreeSWITCH, conn: Connection, arg: str, rest: str) -> None:
    job = ""
    for line in rest.split("\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "job-uuid":
            job = value.strip()
    job = job or str(uuidlib.uuid4())
    conn.send(command_reply(f"+OK Job-UUID: {job}", f"Job-UUID: {job}\n"))
    command, _, cmd_arg = arg.partition(" ")

    def run() -> None:
        if fs.api_delay > 0:
            gevent.sleep(fs.api_delay)
        body, phases = api_mod.execute(fs, arg, conn)
        if phases:  # uuid_kill: the killed leg's HANGUP fires before the job result
            phases[0]()
        fs.emit_background_job(job, command, cmd_arg, api_mod.no_reply(body))
        for phase in phases[1:]:
            phase()

    if fs.api_delay > 0:
        gevent.spawn(run)
    else:
        run()


class ApiHold:
    """See :meth:`FakeFreeSWITCH.hold_api`."""

    def __init__(self, prefix: str, count: int | None) -> None:
        self.prefix = prefix
        self.remaining = -1 if count is None else count
        self.released = gevent.event.Event()
        self.seen = 0       # commands that matched (held or not)
        self.waiting = 0    # commands being held right now
        self.answered = 0   # held commands let through (answered right after)

    def release(self) -> None:
        self.released.set()


_COMMANDS: dict[str, Callable[[FakeFreeSWITCH, Connection, str, str], None]] = {
    "exit": _cmd_exit, "auth": _cmd_auth, "event": _cmd_event, "noevents": _cmd_noevents,
    "nixevent": _cmd_nixevent, "myevents": _cmd_myevents, "filter": _cmd_filter,
    "linger": _cmd_linger, "nolinger": _cmd_nolinger, "sendmsg": _cmd_sendmsg, "api": _cmd_api,
    "bgapi": _cmd_bgapi,
}
