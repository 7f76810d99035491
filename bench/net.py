"""Throughput, baselines and latency: the consumers, in this (gevent) process, against the
sender process (bench/sender.py) over loopback TCP.

The daemon side is the real code: a :class:`Guard` whose NodeLink connects a GuardESL, reads
256 KB chunks, splits frames and runs ``Guard.node_event`` -> EventDecoder -> Tracker -> dispatch.
Only ``node_disconnected`` is wrapped, to note when the reader reached the end of the stream.
"""
from __future__ import annotations

import logging
import multiprocessing
import socket
import time
from typing import Any

import gevent
import gevent.select
import gevent.socket
from gevent.event import Event
from greenswitch import InboundESL

from bench import sender, stream
from bench.stream import NODE, OVER_ACCOUNT, PASSWORD
from esl_guard.config import Config, NodeConfig
from esl_guard.esl import GuardESL
from esl_guard.events import CALL_EVENTS, SUBSCRIPTION
from esl_guard.node import NodeLink
from esl_guard.service import Guard

RUN_TIMEOUT = 150.0


class BenchError(Exception):
    pass


class SenderProcess:
    """The sender in its own process, driven over a pipe without blocking the gevent hub."""

    def __init__(self, calls: int, accounts: int, breaches: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=sender.main, args=(child, calls, accounts, breaches),
                                name="bench-sender", daemon=True)
        self.proc.start()
        child.close()
        self.info = self._expect("ready", 120.0)

    def _expect(self, kind: str, timeout: float) -> Any:
        ready, _, _ = gevent.select.select([self.conn.fileno()], [], [], timeout)
        if not ready:
            raise BenchError(f"the sender sent no {kind!r} within {timeout:g}s")
        try:
            got, value = self.conn.recv()
        except EOFError:
            raise BenchError(f"the sender died (exit code {self.proc.exitcode})") from None
        if got != kind:
            raise BenchError(f"sender: {value}" if got == "error" else f"sender sent {got!r}")
        return value

    def start(self, kind: str, **args: Any) -> int:
        """Start a job; returns the port the sender listens on."""
        self.conn.send((kind, args))
        port: int = self._expect("port", 10.0)
        return port

    def result(self, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        value: dict[str, Any] = self._expect("done", timeout)
        return value

    def close(self) -> None:
        try:
            self.conn.send(("stop", None))
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


# --------------------------------------------------------------------------- the daemon
class BenchGuard(Guard):
    """The real Guard; notes when its node's reader hit the end of the stream."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.ended = Event()
        self.ended_at = 0.0
        self.conns: list[GuardESL] = []

    def node_connected(self, link: NodeLink) -> None:
        if link.conn is not None:
            self.conns.append(link.conn)
        super().node_connected(link)

    def node_disconnected(self, link: NodeLink, reason: str) -> None:
        if not self.ended.is_set():
            self.ended_at = time.monotonic()
            self.ended.set()
        super().node_disconnected(link, reason)

    def events_seen(self) -> int:
        reg = self.metrics.registry
        return int(sum(reg.get_sample_value("esl_guard_events_total", {"event": n}) or 0
                       for n in CALL_EVENTS))


def bench_config(port: int) -> Config:
    node = NodeConfig(name=NODE, port=port, password=PASSWORD, resync_interval=3600.0,
                      heartbeat_interval=3600.0)
    return Config(nodes=(node,), policy=stream.POLICY,
                  accounts={OVER_ACCOUNT: stream.OVER_LIMITS}, destinations=stream.DESTINATIONS)


def quiet_logging() -> None:
    """Decisions are logged (formatted, written) as in production, to /dev/null."""
    handler = logging.FileHandler("/dev/null")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def stop(guard: BenchGuard) -> None:
    guard.stop()
    for conn in guard.conns:
        # GuardESL.close() leaves the socket open while greenswitch's makefile() object
        # holds it (see the benchmark report); close it so the sender sees the end.
        conn.sock_file.close()


#: The daemon's last command before it follows events (its event filters come before it).
DAEMON_READY = "event plain"


def daemon_throughput(snd: SenderProcess, passes: int,
                      guard_class: type[BenchGuard] | None = None) -> dict[str, Any]:
    port = snd.start("blast", passes=passes, trigger=DAEMON_READY)
    guard = (guard_class or BenchGuard)(bench_config(port))
    guard.start()
    try:
        if not guard.ended.wait(timeout=RUN_TIMEOUT):
            raise BenchError("the daemon did not reach the end of the stream")
        sent = snd.result()
        seen = guard.events_seen()
        calls = guard.tracker.tracked_channels()
    finally:
        stop(guard)
    if seen != sent["events"]:
        raise BenchError(f"the daemon counted {seen} of {sent['events']} events")
    secs = guard.ended_at - sent["t_first"]
    return {"events": seen, "bytes": sent["bytes"], "seconds": secs, "events_per_s": seen / secs,
            "left_tracked": calls}


# --------------------------------------------------------------------------- greenswitch
def greenswitch_throughput(snd: SenderProcess, passes: int) -> dict[str, Any]:
    # No half-close: greenswitch stops handling queued events once its reader sees EOF.
    port = snd.start("blast", passes=passes, trigger="event plain", half_close=False)
    expected = passes * snd.info["events_per_pass"]
    done = Event()
    state = {"n": 0, "t": 0.0}

    def noop(event: Any) -> None:
        state["n"] += 1
        if state["n"] == expected:
            state["t"] = time.monotonic()
            done.set()

    esl = InboundESL("127.0.0.1", port, PASSWORD)
    esl.register_handle("*", noop)
    esl.connect()
    try:
        esl.send(f"event plain {SUBSCRIPTION}")
        if not done.wait(timeout=RUN_TIMEOUT):
            raise BenchError(f"greenswitch handled {state['n']} of {expected} events")
        sent = snd.result()
    finally:
        esl.connected = False  # no "exit": its reply would never be read
        esl.sock.shutdown(socket.SHUT_RDWR)  # wakes its reader; close() would not (makefile)
        esl.stop()
    secs = state["t"] - sent["t_first"]
    return {"events": expected, "seconds": secs, "events_per_s": expected / secs}


# --------------------------------------------------------------------------- bare read
def raw_throughput(snd: SenderProcess, passes: int) -> dict[str, Any]:
    port = snd.start("blast", passes=passes, trigger=None)
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = bytearray(256 * 1024)
    total = 0
    try:
        sock.settimeout(RUN_TIMEOUT)
        while n := sock.recv_into(buf):
            total += n
        t_end = time.monotonic()
    finally:
        sock.close()
    sent = snd.result()
    total -= len(sender.AUTH_REQUEST)
    if total != sent["bytes"]:
        raise BenchError(f"read {total} of {sent['bytes']} bytes")
    secs = t_end - sent["t_first"]
    return {"events": sent["events"], "bytes": total, "seconds": secs,
            "events_per_s": sent["events"] / secs, "mb_per_s": total / secs / 1e6}


# --------------------------------------------------------------------------- latency
def latency(snd: SenderProcess, seconds: float, rate: float,
            guard_class: type[BenchGuard] | None = None) -> dict[str, Any]:
    port = snd.start("latency", seconds=seconds, rate=rate, trigger=DAEMON_READY)
    guard = (guard_class or BenchGuard)(bench_config(port))
    guard.start()
    try:
        res = snd.result(seconds + RUN_TIMEOUT)
    finally:
        stop(guard)
    samples: list[float] = res.pop("samples")
    if not samples:
        raise BenchError("no uuid_kill came back")

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] * 1000

    return {**res, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": samples[-1] * 1000,
            "mean_ms": sum(samples) / len(samples) * 1000}
