"""Memory and scaling: the pure core (EventDecoder + Tracker) in-process, no network.

Both run in a fresh child process (see ``__main__``) so the heap of the other measurements
does not blur them.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
import tracemalloc
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench import stream
from bench.stream import NODE, PLACEHOLDER_UUID, account, event_bodies, limits_for
from esl_guard.events import EventDecoder
from esl_guard.model import CallEvent
from esl_guard.tracker import Tracker

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def new_tracker() -> Tracker:
    return Tracker(limits_for, time.time, stream.DESTINATIONS)


def open_calls(tracker: Tracker, calls: int, accounts: int, now: float = 0.0) -> list[str]:
    """``calls`` answered calls spread over ``accounts`` accounts, as the decoder would hand
    them over (a fresh uuid and account string per event).  Returns the uuids."""
    uuids = []
    for i in range(calls):
        uuid = str(uuidlib.uuid4())
        t = now + i * 1e-3
        tracker.on_event(CallEvent("CHANNEL_CREATE", NODE, uuid, account(i % accounts),
                                   destination="9001"), t)
        tracker.on_event(CallEvent("CHANNEL_ANSWER", NODE, uuid, account(i % accounts)), t)
        uuids.append(uuid)
    return uuids


# --------------------------------------------------------------------------- memory
def memory(calls: int, accounts: int) -> dict[str, Any]:
    """Bytes per tracked call: RSS delta first (without tracemalloc's own overhead), then the
    exact tracemalloc delta, its top allocation sites, and what stays after every call ended."""
    gc.collect()
    before = rss()
    tracker = new_tracker()
    open_calls(tracker, calls, accounts)
    gc.collect()
    rss_delta = rss() - before
    assert tracker.live_calls() == calls
    del tracker
    gc.collect()

    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    start = tracemalloc.get_traced_memory()[0]
    tracker = new_tracker()
    uuids = open_calls(tracker, calls, accounts)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - start - _list_size(uuids)
    top = [(str(s.traceback[0]).replace(os.getcwd() + os.sep, ""), s.size_diff // calls)
           for s in tracemalloc.take_snapshot().compare_to(base, "lineno")[:6]]
    for i, uuid in enumerate(uuids):
        tracker.on_event(CallEvent("CHANNEL_HANGUP_COMPLETE", NODE, uuid), calls * 1e-3 + i * 1e-3)
    del uuids
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    return {"calls": calls, "accounts": accounts, "bytes_per_call": traced / calls,
            "rss_bytes_per_call": rss_delta / calls, "top_sites": top,
            "retained_after_hangup_per_call": retained / calls}


def _list_size(items: list[str]) -> int:
    """The benchmark's own list of uuids (its slots; the strings belong to the tracker)."""
    return items.__sizeof__()


# --------------------------------------------------------------------------- scaling
def scaling(sizes: list[int], churn: int, batch: int = 500) -> dict[str, Any]:
    """Cost per event of decode + track with N live calls: N calls are opened, then ``churn``
    times the oldest call hangs up and a new one is created and answered (N stays constant).
    Bodies are rendered beforehand, one batch at a time, outside the timed loop.  The sizes
    take turns, a batch each, and each reports its median batch: on a shared VM the CPU is
    slower for seconds at a time, which measured one after the other made the ratio swing
    from x0.65 to x1.6 for the same code."""
    bodies = event_bodies()
    states = []
    for n in sizes:
        tracker = new_tracker()
        accounts = max(1, n // 10)
        live = deque(enumerate(open_calls(tracker, n, accounts)))
        states.append(_Churn(n, accounts, tracker, EventDecoder(NODE), live, n * 1e-3, n))
    gc.collect()
    for start in range(-batch, churn, batch):  # one batch each untimed first: warming up
        for st in states:
            work = st.batch(bodies, min(batch, churn - max(start, 0)))
            t0 = time.perf_counter()
            st.apply(work)
            took = time.perf_counter() - t0
            if start >= 0:
                st.spent += took
                st.events += len(work)
                st.per_event.append(took / len(work))
    out: dict[str, Any] = {}
    for st in states:
        assert st.tracker.live_calls() == st.n, "the churn changed the number of live calls"
        out[str(st.n)] = {"live_calls": st.n, "accounts": st.accounts, "events": st.events,
                          "us_per_event": statistics.median(st.per_event) * 1e6,
                          "mean_us_per_event": st.spent / st.events * 1e6}
    return out


@dataclass
class _Churn:
    """One size of :func:`scaling`: its tracker and live calls, and what it measured."""

    n: int
    accounts: int
    tracker: Any
    decoder: EventDecoder
    live: deque[tuple[int, str]]
    now: float
    seq: int
    spent: float = 0.0
    events: int = 0
    per_event: list[float] = field(default_factory=list)

    def batch(self, bodies: dict[tuple[str, bool], bytes], calls: int) -> list[tuple[str, bytes]]:
        """The events of ``calls`` new calls, each ending the oldest one."""
        work: list[tuple[str, bytes]] = []
        for _ in range(calls):
            i, old = self.live.popleft()
            new = str(uuidlib.uuid4())
            acct = account(i % self.accounts).encode()
            self.live.append((i, new))
            for name, with_acct, uuid in (("CHANNEL_CREATE", self.seq % 2 == 0, new),
                                          ("CHANNEL_ANSWER", True, new),
                                          ("CHANNEL_HANGUP_COMPLETE", True, old)):
                body = bodies[(name, with_acct)].replace(PLACEHOLDER_UUID.encode(), uuid.encode())
                work.append((name, body.replace(account(0).encode(), acct)))
            self.seq += 1
        return work

    def apply(self, work: list[tuple[str, bytes]]) -> None:
        decoder, on_event, now = self.decoder, self.tracker.on_event, self.now
        for name, body in work:
            on_event(decoder.lazy(body, name), now)
            now += 1e-4
        self.now = now
