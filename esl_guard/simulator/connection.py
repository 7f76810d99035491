"""One client connection of the simulated event socket: reader, command worker, writer.

The reader only splits the byte stream into command blocks (so ``FakeFreeSWITCH.commands`` sees a
command the moment it arrives); a worker greenlet runs them one after another (an ``api`` blocks
the next command on that connection, as in FreeSWITCH) and a writer greenlet drains an outgoing
queue, so events keep flowing while an ``api`` reply is delayed and a slow client never blocks
the simulator.
"""
from __future__ import annotations

import logging
import re
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent.queue import Queue

from esl_guard.simulator.wire import AUTH_REQUEST

if TYPE_CHECKING:
    from gevent.socket import socket as GeventSocket

log = logging.getLogger(__name__)

_CLOSE = object()


class Connection:
    """State of one ESL client (subscriptions, filters) and its I/O greenlets."""

    def __init__(self, sock: GeventSocket, addr: object, on_command: Callable[[Connection, str], None],
                 on_block: Callable[[Connection, str], None]) -> None:
        self.sock = sock
        self.addr = addr
        self.authed = False
        self.fmt = "plain"
        self.all_events = False
        self.events: set[str] = set()
        self.nixed: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.closed = False
        self.closing = False  # exit / failed auth / shutdown: flushing the last frames
        self._on_command = on_command
        self._on_block = on_block
        self._out: Queue = Queue()
        self._cmds: Queue = Queue()
        self._held: list[bytes] | None = None  # events waiting for an inline api to finish
        self._writer = gevent.spawn(self._write_loop)
        self._worker = gevent.spawn(self._work_loop)
        self.send(AUTH_REQUEST)

    # ---- subscriptions -----------------------------------------------------------------------
    def wants(self, name: str) -> bool:
        if not self.authed or self.closed or self.closing or name in self.nixed:
            return False
        return self.all_events or name in self.events

    def passes_filters(self, headers: Callable[[], dict[str, str]]) -> bool:
        """FreeSWITCH filter semantics (simplified): with filters set, an event is sent when a
        ``+`` filter matches (case-insensitive, or ``/regex/`` as in mod_event_socket); a
        matching ``-`` filter (value ``-x``) blocks it."""
        if not self.filters:
            return True
        values = headers()
        send = False
        for header, wanted in self.filters:
            have = values.get(header)
            if have is None:
                continue
            negative = wanted.startswith("-")
            target = wanted.lstrip("+-").strip()
            if wanted.startswith("/"):
                matched = re.search(wanted[1:].rsplit("/", 1)[0], have) is not None
            else:
                matched = have.lower() == target.lower()
            if matched:
                if negative:
                    return False
                send = True
        return send

    # ---- output ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if not self.closed and not self.closing:
            self._out.put(data)

    def send_event(self, data: bytes) -> None:
        """An event: queued behind an ``api`` that is running inline (see :meth:`hold_events`)."""
        if self._held is not None:
            self._held.append(data)
        else:
            self.send(data)

    def hold_events(self) -> None:
        """While an ``api`` runs, FreeSWITCH's listener thread sends nothing else on this
        connection (mod_event_socket runs ``api`` inline): events wait until :meth:`release_events`."""
        if self._held is None:
            self._held = []

    def release_events(self) -> None:
        held, self._held = self._held, None
        for data in held or ():
            self.send(data)

    def close_after_flush(self) -> None:
        """Send what is queued, then close (exit, failed auth, shutdown); nothing more is sent."""
        if not self.closed and not self.closing:
            self.closing = True
            self._out.put(_CLOSE)

    def abort(self, reset: bool = True) -> None:
        """Cut the connection now (RST when ``reset``), dropping anything not yet written."""
        if self.closed:
            return
        self.closed = True
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._out.put(_CLOSE)
        self._cmds.put(_CLOSE)

    def _write_loop(self) -> None:
        out = self._out
        while True:
            item = out.get()
            batch: list[bytes] = []
            close = False
            while True:
                if item is _CLOSE:
                    close = True
                    break
                batch.append(item)
                if out.empty() or len(batch) >= 256:
                    break
                item = out.get_nowait()
            if batch and not self.closed:
                try:
                    self.sock.sendall(b"".join(batch))
                except OSError as exc:
                    log.debug("write to %s failed: %s", self.addr, exc)
                    self.abort(reset=False)
                    return
            if close:
                if not self.closed:
                    self.closed = True
                    try:
                        self.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.sock.close()
                self._cmds.put(_CLOSE)
                return

    # ---- input -------------------------------------------------------------------------------
    def read_loop(self) -> None:
        """Run in the server's handler greenlet until EOF or close."""
        buf = b""
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                while not self.closed and not self.closing:
                    block, buf = _split_block(buf)
                    if block is None:
                        break
                    text = block.decode("utf-8", "surrogateescape")
                    self._on_block(self, text)
                    self._cmds.put(text)
        finally:
            if not self.closed:
                self.closed = True
                self.sock.close()
                self._out.put(_CLOSE)
                self._cmds.put(_CLOSE)

    def _work_loop(self) -> None:
        while True:
            item = self._cmds.get()
            if item is _CLOSE or self.closed:
                return
            if self.closing:
                continue
            try:
                self._on_command(self, item)
            except Exception:  # a simulator bug must not kill the connection silently
                log.exception("simulator failed on command %r", item[:200])

    def join(self, timeout: float | None = None) -> None:
        gevent.joinall([self._writer, self._worker], timeout=timeout)

    def kill(self) -> None:
        gevent.killall([self._writer, self._worker], block=False)


def _split_block(buf: bytes) -> tuple[bytes | None, bytes]:
    """Cut one command block (headers up to a blank line, plus a Content-Length body if any)."""
    buf = buf.lstrip(b"\r\n") if buf[:1] in (b"\n", b"\r") else buf
    end = buf.find(b"\n\n")
    if end < 0:
        return None, buf
    head = buf[:end]
    rest = buf[end + 2:]
    lower = head.lower()
    idx = lower.find(b"content-length:")
    if idx >= 0:
        line_end = head.find(b"\n", idx)
        raw = head[idx + 15: line_end if line_end >= 0 else len(head)].strip()
        try:
            length = int(raw)
        except ValueError:
            length = 0
        if len(rest) < length:
            return None, buf
        return head + b"\n\n" + rest[:length], rest[length:]
    return head, rest
