"""greenswitch adapter: one inbound ESL connection, made safe for a daemon.

greenswitch's ``InboundESL`` gives us the connection life cycle (connect, auth handshake,
``register_handle``), but as FIELD.md notes its ``send`` has no timeout and no lock, a pending
reply is never released when the connection drops, and its reader URL-decodes and splits every
line of every event.  :class:`GuardESL` keeps the class and replaces those three parts:

* ``receive_events`` reads large chunks and splits frames by Content-Length
  (:mod:`esl_guard.frames`); events are handed to one cheap callback, never parsed in full;
* ``send`` serialises writes under a lock, validates the command line, and waits for its reply
  with a timeout; a dropped connection fails every pending command;
* nothing here ever waits for a reply inside the reader greenlet.
"""
from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Mapping

import gevent
import gevent.lock
from gevent import socket
from gevent.event import AsyncResult
from greenswitch.esl import InboundESL, NotConnectedError

from esl_guard.events import CALL_EVENTS, event_name
from esl_guard.frames import DEFAULT_MAX_FRAME, Frame, FrameReader, ProtocolError

log = logging.getLogger(__name__)

_EVENT_NAMES = {name.encode(): name for name in (*CALL_EVENTS, "CHANNEL_DESTROY", "HEARTBEAT",
                                                  "BACKGROUND_JOB", "CHANNEL_BRIDGE",
                                                  "CHANNEL_UNBRIDGE")}


#: the pause of a bulk connection's reader between reads: any timer makes the hub poll
BULK_PAUSE = 0.0001


_DECODE_CHUNK = 1 << 20


def _decode(body: bytes, pause: float) -> str:
    """UTF-8 (bad bytes replaced); a big body in 1 MiB steps with a pause between them."""
    if len(body) <= _DECODE_CHUNK or not pause:
        return body.decode("utf-8", "replace")
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    parts = []
    with memoryview(body) as view:
        for i in range(0, len(body), _DECODE_CHUNK):
            parts.append(decoder.decode(view[i:i + _DECODE_CHUNK]))
            gevent.sleep(pause)
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


class ESLError(Exception):
    """A command failed: not connected, timed out, or the connection dropped."""


class AuthError(ESLError):
    pass


class Reply:
    """A command/reply or api/response frame."""

    __slots__ = ("headers", "body")

    def __init__(self, headers: Mapping[str, str], body: str) -> None:
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        """Reply-Text for command/reply, the body for api/response."""
        return self.headers.get("Reply-Text", self.body)

    @property
    def ok(self) -> bool:
        return self.text.startswith("+OK")


class GuardESL(InboundESL):  # type: ignore[misc]
    def __init__(self, host: str, port: int, password: str, *, timeout: float = 5.0,
                 command_timeout: float = 5.0, on_event: Callable[[str, bytes], None],
                 on_close: Callable[[str], None], max_frame: int = DEFAULT_MAX_FRAME,
                 max_reply: int | None = None, bulk: bool = False) -> None:
        """``bulk``: a connection that may receive huge answers; between two reads its reader
        lets the hub poll every socket (a ``sleep(0)`` only runs ready greenlets, and a
        connection whose data is always there would keep the others waiting)."""
        super().__init__(host, port, password, timeout=timeout)
        self.command_timeout = command_timeout
        self.on_event = on_event
        self.on_close = on_close
        self.last_rx = 0.0
        self._reader = FrameReader(max_frame, max_reply=max_reply)
        self._write_lock = gevent.lock.Semaphore()
        self._closed_reason: str | None = None
        self._commands_sent: list[AsyncResult] = []
        self.auth_failed = False
        self.stopping = False
        self._pause = BULK_PAUSE if bulk else 0.0

    # -- life cycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        """TCP connect + auth with an overall timeout; raises ESLError/AuthError."""
        try:
            with gevent.Timeout(self.timeout + self.command_timeout,
                                ESLError(f"no auth/request from {self.host}:{self.port}")):
                super().connect()
        except (NotConnectedError, OSError) as exc:
            self.close("connect failed")
            raise ESLError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        except ValueError:
            self.auth_failed = True
            self.close("authentication failed")
            raise AuthError(f"authentication failed at {self.host}:{self.port} "
                            "(check the ESL password)") from None
        except ESLError:
            self.close("handshake timed out")
            raise

    def authenticate(self) -> None:
        reply = self.send(f"auth {self.password}", _secret=True)
        if reply.text != "+OK accepted":
            raise ValueError("Invalid password.")

    def process_events(self) -> None:
        """greenswitch's queue consumer is not used: events go straight to ``on_event``."""

    def close(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        self.connected = False
        self._run = False
        pending = self._commands_sent
        self._commands_sent = []
        for result in pending:
            if not result.ready():
                result.set_exception(ESLError(f"connection closed: {reason}"))
        self._auth_request_event.set()
        # greenswitch's makefile() holds the fd too: shut the socket down, then close both, or
        # the connection stays open (and FreeSWITCH keeps queueing to it) until GC.
        sock = getattr(self, "sock", None)
        if sock is not None:
            for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close,
                         getattr(self, "sock_file", None) and self.sock_file.close):
                try:
                    if step:
                        step()
                except OSError:
                    pass
        try:
            self.on_close(reason)
        except Exception:  # noqa: BLE001 - a callback bug must not hide the close
            log.exception("on_close callback failed")

    def stop(self) -> None:
        """Polite goodbye (``exit``) then close."""
        self.stopping = True
        if self.connected:
            try:
                self.send("exit", timeout=1.0)
            except ESLError:
                pass
        self.close("stopped")

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    # -- reading ------------------------------------------------------------------------------
    def receive_events(self) -> None:
        recv_into = self.sock.recv_into
        reader = self._reader
        reason = "connection closed by FreeSWITCH"
        try:
            while self._run:
                if not reader.fill(recv_into):
                    break
                self.last_rx = gevent.get_hub().loop.now()
                for frame in reader.frames(self._event):
                    self._dispatch(frame)
                gevent.sleep(self._pause)  # let command senders and the ticker run under a flood
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.error("ESL %s:%s: %s; resetting the connection", self.host, self.port, exc)
        except OSError as exc:
            reason = f"socket error: {exc}"
        self.close(reason)

    def _event(self, body: bytes) -> None:
        """One plain event: its name (the first line of every real event), then the handler."""
        name = None
        if body.startswith(b"Event-Name: "):
            name = _EVENT_NAMES.get(body[12:body.find(b"\n", 12)])
        if name is None:
            name = event_name(body) or ""
        try:
            self.on_event(name, body)
        except Exception:  # noqa: BLE001 - one bad event must not stop the reader
            log.exception("event handler failed on %s", name or "an unnamed event")

    def _dispatch(self, frame: Frame) -> None:
        ctype = frame.content_type
        if ctype == "text/event-plain":
            self._event(frame.body)
        elif ctype in ("command/reply", "api/response"):
            body = _decode(frame.body, self._pause)
            if not self._commands_sent:
                log.warning("ESL %s:%s: reply with no pending command: %.80r",
                            self.host, self.port, body or frame.headers.get("Reply-Text"))
                return
            self._commands_sent.pop(0).set(Reply(frame.headers, body))
        elif ctype == "auth/request":
            self._auth_request_event.set()
        elif ctype in ("text/disconnect-notice", "text/rude-rejection"):
            text = frame.body.decode("utf-8", "replace").strip().replace("\n", " ")
            log.log(logging.DEBUG if self.stopping else logging.WARNING, "ESL %s:%s: %s: %s",
                    self.host, self.port, ctype, text)
            if frame.headers.get("Content-Disposition") != "linger":
                self._run = False
                self.connected = False
                self._auth_request_event.set()
        else:
            log.debug("ESL %s:%s: skipping frame of type %r", self.host, self.port, ctype)

    # -- writing ------------------------------------------------------------------------------
    def send(self, data: str, timeout: float | None = None, _secret: bool = False) -> Reply:
        """Send one single-line command and wait for its reply (with a timeout)."""
        result = self.send_nowait(data, _secret=_secret)
        try:
            return result.get(timeout=self.command_timeout if timeout is None else timeout)
        except gevent.Timeout:
            # The reply may still come: the result stays queued so replies stay in order.
            shown = "auth ***" if _secret else data
            raise ESLError(f"no reply to {shown!r} within "
                           f"{self.command_timeout if timeout is None else timeout:g}s") from None

    def send_nowait(self, data: str, _secret: bool = False) -> AsyncResult:
        if "\n" in data or "\r" in data or not data.strip():
            raise ValueError("an ESL command must be one non-empty line")
        if not self.connected:
            raise ESLError("not connected")
        result: AsyncResult = AsyncResult()
        with self._write_lock:
            if not self.connected:
                raise ESLError("not connected")
            self._commands_sent.append(result)
            try:
                self.sock.sendall((data + "\n\n").encode("utf-8"))
            except OSError as exc:
                self.close(f"socket error on send: {exc}")
                raise ESLError(f"send failed: {exc}") from None
        return result

