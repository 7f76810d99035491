"""Prototypes of the hot-path changes suggested by the benchmark.  NOT the headline numbers.

``python -m bench.proto_hotpath [--quick]`` prints, on the same pre-rendered frames, the cost per
event of each stage in the current esl_guard code and in these prototypes (checking both give
the same frames, CallEvents and tracker decisions), then the end-to-end daemon throughput over
TCP with the current code and with the prototypes swapped in.

The prototypes:

* :class:`ProtoFrameReader` (for ``frames.FrameReader``): works on ``bytes`` instead of a
  bytearray (one copy per body instead of two, no ``del buf[:pos]``), a fast path for the
  ``Content-Length``/``Content-Type: text/event-plain`` outer block, and a parts list for frames
  larger than a chunk;
* :class:`ProtoDecoder` (for ``events.EventDecoder``): no full scan for the end of the header
  block (a found header is checked with one bounded search up to it); hangup events decode only
  ``Unique-ID`` (the tracker uses nothing else from them); with the node's calls given, an
  event of a call whose account is already known decodes only ``Unique-ID`` as well;
* :class:`ProtoGuard` (for ``service.Guard``): the node's calls handed to the decoder, and
  ``dispatch`` sends every ``uuid_kill`` before it logs, audits and counts the actions.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from bench import net
from bench.stream import NODE, PassBuffer, limits_for
from esl_guard import esl as esl_module
from esl_guard.config import NodeConfig
from esl_guard.events import END_EVENTS, EventDecoder
from esl_guard.frames import (
    DEFAULT_MAX_FRAME,
    MAX_HEADER_BLOCK,
    Frame,
    FrameReader,
    ProtocolError,
    _parse_headers,
)
from esl_guard.model import Action, ActionKind, CallEvent
from esl_guard.safety import is_uuid
from esl_guard.service import NodeSync
from esl_guard.tracker import Call, Tracker

_EVENT_BLOCK_HEAD = b"Content-Length: "
_EVENT_BLOCK_TAIL = b"\nContent-Type: text/event-plain"


class ProtoFrameReader:
    """Same contract as :class:`esl_guard.frames.FrameReader`."""

    __slots__ = ("_rest", "_parts", "_have", "_need", "_max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._rest = b""
        self._parts: list[bytes] = []  # chunks of a frame known to need ``_need`` bytes
        self._have = 0
        self._need = 0
        self._max_frame = max_frame

    @property
    def buffered(self) -> int:
        return len(self._rest) + self._have

    def feed(self, data: bytes) -> list[Frame]:
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._parts)
            self._parts, self._have, self._need = [], 0, 0
        elif self._rest:
            data = self._rest + data
        frames: list[Frame] = []
        find = data.find
        size = len(data)
        pos = 0
        while pos < size:
            while pos < size and data[pos] == 10:
                pos += 1
            end = find(b"\n\n", pos)
            if end < 0 or end - pos > MAX_HEADER_BLOCK:
                if size - pos > MAX_HEADER_BLOCK or end >= 0:
                    raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
                break
            block = data[pos:end]
            if block.startswith(_EVENT_BLOCK_HEAD) and block.endswith(_EVENT_BLOCK_TAIL):
                raw = block[16:-31]
                headers = {"Content-Length": raw.decode("ascii", "replace"),
                           "Content-Type": "text/event-plain"}
            else:
                headers = _parse_headers(block)
                raw = headers.get("Content-Length", "0").encode("utf-8", "replace")
            if not raw.isdigit():
                raise ProtocolError(f"bad Content-Length {raw[:40]!r}")
            length = int(raw)
            if length > self._max_frame:
                raise ProtocolError(f"frame of {length} bytes over the {self._max_frame} cap")
            start = end + 2
            stop = start + length
            if stop > size:
                if stop - size > 65536:  # a big frame: collect the chunks, join them once
                    self._parts, self._have, self._need = [data[pos:]], size - pos, stop - pos
                    self._rest = b""
                    return frames
                break
            frames.append(Frame(headers.get("Content-Type", ""), headers, data[start:stop]))
            pos = stop
        self._rest = data[pos:] if pos < size else b""
        return frames


class ProtoDecoder(EventDecoder):
    """Same results as :class:`EventDecoder` for what the tracker reads."""

    __slots__ = ()

    def decode(self, body: bytes, name: str,  # type: ignore[override]
               calls: Mapping[str, Call] | None = None) -> CallEvent | None:
        uuid = _value(body, b"\nUnique-ID: ")
        if not uuid:
            return None
        if name in END_EVENTS:
            return CallEvent(name, self.node, uuid)
        if calls is not None:
            call = calls.get(uuid)
            if call is not None and call.account is not None:
                return CallEvent(name, self.node, uuid)  # nothing else would be used
        account = _value(body, self._account_key) or None
        other = _value(body, b"\nOther-Leg-Unique-ID: ") or None
        b_leg = False
        if other is not None:
            b_leg = _value(body, b"\nCall-Direction: ") == "outbound"
        return CallEvent(name, self.node, uuid, account, b_leg, other)


def _value(body: bytes, key: bytes) -> str | None:
    """Like ``events.header_value`` without a known header end: a hit is checked to lie in the
    header block by one search for a blank line up to it (values are URL-encoded, so a blank
    line only ends the block)."""
    i = body.find(key)
    if i < 0:
        if not body.startswith(key[1:]):
            return None
        start = len(key) - 1
    else:
        if body.find(b"\n\n", 0, i + 1) >= 0:
            return None  # in an inner body
        start = i + len(key)
    stop = body.find(b"\n", start)
    raw = body[start:] if stop < 0 else body[start:stop]
    if b"%" in raw:
        return unquote(raw.decode("utf-8", "replace"), errors="replace")
    return raw.decode("utf-8", "replace")


class ProtoGuard(net.BenchGuard):
    """BenchGuard with ProtoDecoder (given the node's calls) and kills sent first."""

    def _add_node(self, cfg: NodeConfig) -> None:
        super()._add_node(cfg)
        self.decoders[cfg.name] = ProtoDecoder(cfg.name, self.config.account_variable)

    def _apply_event(self, node: str, name: str, body: bytes, st: NodeSync) -> None:
        t0 = time.perf_counter()
        decoder = self.decoders[node]
        ev = decoder.decode(body, name, self.tracker.nodes.get(node))  # type: ignore[call-arg]
        if ev is None or not is_uuid(ev.uuid):
            super()._apply_event(node, name, body, st)  # the current path reports bad input
            return
        if st.inflight:
            (st.ended if name in END_EVENTS else st.seen).add(ev.uuid)
        actions = self.tracker.on_event(ev, self.clock())
        if actions:
            self.dispatch(actions, t0)

    def dispatch(self, actions: list[Action], t0: float | None = None) -> None:
        """Every uuid_kill leaves before the logging, auditing and metrics of the batch."""
        for action in actions:
            if action.kind is ActionKind.HANGUP and not action.dry_run:
                super()._kill(action)
                action.extra["killed"] = True
        super().dispatch(actions, t0)

    def _kill(self, a: Action) -> None:
        if not a.extra.pop("killed", False):
            super()._kill(a)


# --------------------------------------------------------------------------- measuring
def _per_event(fn: Callable[[], object], n: int, repeat: int = 5) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6, out


def stages(calls: int) -> list[tuple[str, float, float]]:
    """(stage, current µs/event, prototype µs/event), after checking both agree."""
    data = bytes(PassBuffer(calls, 1000).buf)
    chunks = [data[i:i + esl_module.READ_CHUNK] for i in range(0, len(data), esl_module.READ_CHUNK)]

    def read(cls: Callable[[], Any]) -> Callable[[], list[Frame]]:
        def run() -> list[Frame]:
            reader, out = cls(), []
            for c in chunks:
                out += reader.feed(c)
            return out
        return run

    cur_f, frames = _per_event(read(FrameReader), 3 * calls)
    new_f, frames2 = _per_event(read(ProtoFrameReader), 3 * calls)
    assert [(f.content_type, f.body) for f in frames] == [(f.content_type, f.body) for f in frames2]
    bodies = [(f.body[12:f.body.find(b"\n")].decode(), f.body) for f in frames]
    n = len(bodies)

    old, new = EventDecoder(NODE), ProtoDecoder(NODE)
    cur_d, events = _per_event(lambda: [old.decode(b, name) for name, b in bodies], n)
    new_d, events2 = _per_event(lambda: [new.decode(b, name) for name, b in bodies], n)
    for a, b in zip(events, events2, strict=True):
        assert a is not None and b is not None and a.uuid == b.uuid
        assert a.name in END_EVENTS or (a.account, a.b_leg) == (b.account, b.b_leg)

    def track(lazy: bool) -> Callable[[], list[Any]]:
        def run() -> list[Any]:
            tr, dec, out = Tracker(limits_for, time.time), (new if lazy else old), []
            calls_of = tr.nodes.setdefault(NODE, {})
            for name, b in bodies:
                ev = dec.decode(b, name, calls_of) if lazy else dec.decode(b, name)  # type: ignore[call-arg]
                assert ev is not None
                out.append(tr.on_event(ev, 1.0))
            return [out, sum(1 for c in calls_of.values() if c.account), tr.live_calls()]
        return run

    cur_t, res = _per_event(track(False), n)
    new_t, res2 = _per_event(track(True), n)
    assert res == res2, "the prototype changed a decision"

    def guard(cls: type[net.BenchGuard]) -> Callable[[], int]:
        def run() -> int:  # a Guard with one node and no connection: node_event only
            g = cls(net.bench_config(1))
            g.sync[NODE] = NodeSync(ok=True)
            g.decoders[NODE] = (ProtoDecoder if cls is ProtoGuard else EventDecoder)(NODE)
            for name, b in bodies:
                g.node_event(NODE, name, b)
            return g.events_seen()
        return run

    cur_g, _ = _per_event(guard(net.BenchGuard), n)
    new_g, _ = _per_event(guard(ProtoGuard), n)
    return [("FrameReader.feed", cur_f, new_f), ("EventDecoder.decode", cur_d, new_d),
            ("decode + Tracker.on_event", cur_t, new_t), ("Guard.node_event (all)", cur_g, new_g)]


def end_to_end(passes: int, rounds: int, seconds: float) -> dict[bool, dict[str, list[float]]]:
    """Throughput (events/s) and latency (p50, p99 ms) per round, current (False) and
    prototype (True), alternating so both see the same machine."""
    snd = net.SenderProcess(2000, 1000, int(seconds * 50))
    out: dict[bool, dict[str, list[float]]] = {p: {"eps": [], "p50": [], "p99": []}
                                               for p in (False, True)}
    try:
        for _ in range(rounds):
            for proto in (False, True):
                saved = esl_module.FrameReader
                if proto:
                    esl_module.FrameReader = ProtoFrameReader  # type: ignore[misc, assignment]
                try:
                    cls = ProtoGuard if proto else None
                    out[proto]["eps"].append(
                        net.daemon_throughput(snd, passes, guard_class=cls)["events_per_s"])
                    gc.collect()
                    lat = net.latency(snd, seconds, 5000.0, guard_class=cls)
                    out[proto]["p50"].append(lat["p50_ms"])
                    out[proto]["p99"].append(lat["p99_ms"])
                    gc.collect()
                finally:
                    esl_module.FrameReader = saved  # type: ignore[misc]
    finally:
        snd.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proto_hotpath", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    net.quiet_logging()
    print(f"{'stage (same frames)':28} {'current':>10} {'prototype':>10}  gain")
    for stage, cur, new in stages(1000 if args.quick else 2000):
        print(f"{stage:28} {cur:8.2f}us {new:8.2f}us  x{cur / new:.2f}")
    res = end_to_end(2 if args.quick else 10, 1 if args.quick else 3, 2.0 if args.quick else 6.0)
    med = {p: {k: statistics.median(v) for k, v in d.items()} for p, d in res.items()}
    print(f"{'daemon over TCP (median)':28} {med[False]['eps']:8,.0f}/s {med[True]['eps']:8,.0f}/s"
          f"  x{med[True]['eps'] / med[False]['eps']:.2f}")
    for k in ("p50", "p99"):
        print(f"{'latency ' + k:28} {med[False][k]:8.2f}ms {med[True][k]:8.2f}ms"
              f"  x{med[False][k] / med[True][k]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
