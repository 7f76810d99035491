"""The sender: a separate process that plays FreeSWITCH's side of the event socket.

It renders its streams once, then serves jobs sent by the benchmark over a pipe.  Each job binds
a fresh listener on 127.0.0.1 port 0, reports the port, accepts ONE client, speaks enough ESL
(auth/request, ``+OK accepted``, ``+OK event listener enabled plain``, ``{"row_count": 0}`` for
``show channels``, ``+OK`` for any other api) and then:

* ``blast``: once the client sent the trigger command, writes ``passes`` passes as fast as the
  socket takes them, reports when the first byte left, and half-closes unless told not to;
* ``latency``: paces background events at ``rate``/s, interleaves ``breaches`` CREATE events of an
  over-limit account, and times each one from its write to the ``api uuid_kill`` for it.

Plain blocking sockets in one thread (select for reads): no GIL contention skews the timings.
Later clients of the same listener (esl-guard's reconciliations, each over a short-lived
connection of its own) are answered by an idle side thread.
"""
from __future__ import annotations

import itertools
import select
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from bench.stream import PassBuffer, breach_frames
from esl_guard.simulator.wire import AUTH_REQUEST, api_response, command_reply

ACCEPT_TIMEOUT = 30.0
DRAIN_TIMEOUT = 30.0


class Peer:
    """One accepted client: reads command blocks, answers them like FreeSWITCH."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self.kills: dict[str, float] = {}  # uuid -> monotonic time its uuid_kill arrived

    def read(self, timeout: float | None) -> list[str]:
        """Commands completed by one recv (waiting up to ``timeout``), each answered."""
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return []
        data = self.sock.recv(65536)
        now = time.monotonic()
        if not data:
            raise EOFError("client closed the connection")
        self._buf += data
        *blocks, self._buf = self._buf.split(b"\n\n")
        commands = [b.decode("utf-8", "replace").strip() for b in blocks if b.strip()]
        for cmd in commands:
            if cmd.startswith("api uuid_kill "):
                self.kills.setdefault(cmd.split()[2], now)
            self.sock.sendall(answer(cmd))
        return commands

    def until(self, trigger: str) -> None:
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        while time.monotonic() < deadline:
            if any(cmd.startswith(trigger) for cmd in self.read(deadline - time.monotonic())):
                return
        raise TimeoutError(f"no {trigger!r} from the client")

    def drain(self, half_close: bool) -> None:
        """Wait (bounded) for the client to close: after a half-close (the client sees the end
        of the stream) by discarding what it sends, else still answering its commands."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        if half_close:
            self.sock.shutdown(socket.SHUT_WR)
        try:
            while time.monotonic() < deadline:
                if half_close:
                    self.sock.settimeout(DRAIN_TIMEOUT)
                    if not self.sock.recv(65536):
                        return
                else:
                    self.read(deadline - time.monotonic())
        except (OSError, EOFError):
            pass


def answer(cmd: str) -> bytes:
    if cmd.startswith("auth "):
        return command_reply("+OK accepted")
    if cmd.startswith("event "):
        return command_reply("+OK event listener enabled plain")
    if cmd.startswith("api show channels"):
        return api_response(b'{"row_count": 0}\n')
    if cmd.startswith("api status"):
        return api_response(b"UP 0 years, 0 days\n0 session(s) - peak 0, last 5min 0 \n")
    if cmd.startswith("api "):
        return api_response(b"+OK\n")
    if cmd == "exit":
        return command_reply("+OK bye")
    return command_reply("+OK")


class Sender:
    def __init__(self, conn: Connection, calls: int, accounts: int, breaches: int) -> None:
        t0 = time.perf_counter()
        self.conn = conn
        self.stream = PassBuffer(calls, accounts)
        self.breaches = breach_frames(breaches)
        self.render_s = time.perf_counter() - t0

    def serve(self) -> None:
        s = self.stream
        self.conn.send(("ready", {"events_per_pass": s.events, "bytes_per_pass": len(s.buf),
                                  "render_s": self.render_s}))
        while True:
            kind, args = self.conn.recv()
            if kind == "stop":
                return
            try:
                self.job(kind, args)
            except (OSError, EOFError, TimeoutError) as exc:
                self.conn.send(("error", f"{kind}: {type(exc).__name__}: {exc}"))

    def job(self, kind: str, args: dict[str, Any]) -> None:
        """Serve one client; the result is reported before waiting for the client to close."""
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.conn.send(("port", listener.getsockname()[1]))
            listener.settimeout(ACCEPT_TIMEOUT)
            sock, _ = listener.accept()
            done = threading.Event()
            others = threading.Thread(target=_serve_others, args=(listener, done), daemon=True)
            others.start()
            try:
                self._serve(kind, args, sock)
            finally:
                done.set()
                others.join()

    def _serve(self, kind: str, args: dict[str, Any], sock: socket.socket) -> None:
        with sock:
            sock.settimeout(None)
            # mod_event_socket sets TCP_NODELAY on every listener socket (listener_run()).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(AUTH_REQUEST)
            peer = Peer(sock)
            if kind == "blast":
                result = self.blast(peer, args["passes"], args["trigger"])
            else:
                result = self.latency(peer, **args)
            self.conn.send(("done", result))
            peer.drain(half_close=kind == "blast" and args.get("half_close", True))

    def blast(self, peer: Peer, passes: int, trigger: str | None) -> dict[str, Any]:
        if trigger:
            peer.until(trigger)
        stream = self.stream
        t_first = time.monotonic()
        for n in range(passes):
            stream.patch(n)
            peer.sock.sendall(stream.buf)
        return {"t_first": t_first, "t_sent": time.monotonic(), "events": passes * stream.events,
                "bytes": passes * len(stream.buf)}

    def background(self) -> Iterator[bytes]:
        stream = self.stream
        for n in itertools.count(1 << 20):  # pass numbers of their own, unlike the blasts
            for i in range(stream.events):
                yield stream.frame(i, n)

    def latency(self, peer: Peer, seconds: float, rate: float, trigger: str) -> dict[str, Any]:
        peer.until(trigger)
        frames = self.background()
        total = int(seconds * rate)
        every = max(1, total // (len(self.breaches) + 1))
        written: dict[str, float] = {}
        gone: dict[str, bytes] = {}
        sent = 0
        t0 = time.monotonic()
        while sent < total:
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            batch = []
            while sent < due:
                batch.append(next(frames))
                sent += 1
                k = sent // every - 1
                if sent % every == 0 and k < len(self.breaches):
                    uuid, create, gone[uuid] = self.breaches[k]
                    peer.sock.sendall(b"".join(batch))
                    batch = []
                    written[uuid] = time.monotonic()
                    peer.sock.sendall(create)
            if batch:
                peer.sock.sendall(b"".join(batch))
            self._hang_up(peer, gone, max(0.0, t0 + sent / rate - time.monotonic()))
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 3.0
        while len(peer.kills) < len(written) and time.monotonic() < deadline:
            self._hang_up(peer, gone, 0.05)
        samples = sorted(peer.kills[u] - t for u, t in written.items() if u in peer.kills)
        return {"samples": samples, "breaches": len(written), "killed": len(samples),
                "background": sent, "background_rate": sent / elapsed}

    def _hang_up(self, peer: Peer, gone: dict[str, bytes], timeout: float) -> None:
        """Answer commands; after each uuid_kill, the call's HANGUP_COMPLETE follows."""
        for cmd in peer.read(timeout):
            if cmd.startswith("api uuid_kill "):
                frame = gone.pop(cmd.split()[2], None)
                if frame is not None:
                    peer.sock.sendall(frame)


def _serve_others(listener: socket.socket, done: threading.Event) -> None:
    """Clients after the first: auth and answers to their commands, nothing else."""
    listener.settimeout(0.2)
    while not done.is_set():
        try:
            sock, _ = listener.accept()
        except OSError:  # the timeout included
            continue
        threading.Thread(target=_answer_only, args=(sock,), daemon=True).start()


def _answer_only(sock: socket.socket) -> None:
    with sock:
        sock.settimeout(None)
        sock.sendall(AUTH_REQUEST)
        peer = Peer(sock)
        try:
            while True:
                peer.read(None)
        except (OSError, EOFError):
            pass


def main(conn: Connection, calls: int, accounts: int, breaches: int) -> None:
    """Process entry point (multiprocessing, spawn)."""
    try:
        Sender(conn, calls, accounts, breaches).serve()
    finally:
        conn.close()
