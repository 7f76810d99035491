"""Pre-rendered ESL event streams built from the real FreeSWITCH templates (render_event).

One *pass* is ``calls`` calls, each CREATE -> ANSWER -> HANGUP_COMPLETE, pipelined so that about
:data:`HANGUP_LAG` calls are up at any moment.  Even calls carry the account from CHANNEL_CREATE
on (digest-auth user), odd calls only from CHANNEL_ANSWER on (account set by the dialplan), as
seen in the captures.  A pass is rendered once; :meth:`PassBuffer.patch` rewrites the first 8
hex digits of every uuid with the pass number, so every pass has its own uuids at no cost.
"""
from __future__ import annotations

import os
import random
import uuid as uuidlib
from dataclasses import replace

from esl_guard.model import Limits, Patterns, Rate
from esl_guard.policy import DestinationClass, Destinations
from esl_guard.simulator import render_event

PASSWORD = "ClueCon"
NODE = "bench"
ANSWER_LAG = 100  # calls created between a call's CREATE and its ANSWER
HANGUP_LAG = 200  # ... and its HANGUP_COMPLETE: ~200 calls up at once
OVER_ACCOUNT = "overlimit"  # max_concurrent_calls = 0: every call of it is a breach
BASE_US = 1_795_000_000_000_000  # a fixed Event-Date-Timestamp: the stream is reproducible

#: The policy of every measurement: all three call limits on, none reached by normal traffic.
POLICY = Limits(max_concurrent_calls=50, max_call_duration=3600.0, max_call_rate=Rate(1000, 1.0))
OVER_LIMITS = Limits(max_concurrent_calls=0)

#: ``--detectors``: every detector of issue 13 on for every account as well, none reached by the
#: stream (every call dials 9001 from 127.0.0.1 in context public with caller ID sipN, and ends
#: within seconds, so each one goes through the short-call window and the inbound count).
DETECTORS = replace(
    POLICY, max_distinct_destinations=Rate(1000, 60.0), max_short_calls=Rate(1000, 1.0),
    max_sequential_destinations=1000, max_source_ips=Rate(10, 60.0),
    caller_id_allowed=Patterns(("sip*",)), max_inbound_concurrent_calls=1000,
    inbound_contexts=frozenset({"public"}))


def use_detectors() -> None:
    """Measure with :data:`DETECTORS` for every account (the breaching one too)."""
    global POLICY, OVER_LIMITS
    POLICY = DETECTORS
    OVER_LIMITS = replace(DETECTORS, max_concurrent_calls=0)


#: ``--classes``: destination classes (issue 12) and a minute budget for every account.  Every
#: call of the stream dials 9001, in class ``service`` (prefix 9): each one goes through the
#: account's and the class's limits and minute windows, none of which the stream reaches.
CLASSES = (
    DestinationClass("premium", ("1900", "1976", "44871", "44872", "44873", "882", "883"), values={
        "max_concurrent_calls": 1, "max_call_rate": Rate(5, 3600.0), "max_call_duration": 600.0,
        "max_minutes": Rate(30, 86400.0)}),
    DestinationClass("international", ("00", "011"), values={"max_concurrent_calls": 4}),
    DestinationClass("service", ("9",), values={
        "max_concurrent_calls": 1000, "max_call_rate": Rate(1000, 1.0),
        "max_call_duration": 3600.0, "max_minutes": Rate(1_000_000, 86400.0)}),
    DestinationClass("emergency", ("112", "911", "999"), exempt=True),
)
DESTINATIONS = Destinations()
#: set by :func:`use_classes`, so that the measurements run in child processes use them too
CLASSES_ENV = "ESL_GUARD_BENCH_CLASSES"


def use_classes() -> None:
    """Measure with :data:`CLASSES` and ``max_minutes`` for every account (the breaching one
    too), in this process and in the children it starts."""
    global POLICY, OVER_LIMITS, DESTINATIONS
    os.environ[CLASSES_ENV] = "1"
    POLICY = replace(POLICY, max_minutes=Rate(1_000_000, 86400.0))
    OVER_LIMITS = replace(POLICY, max_concurrent_calls=0)
    DESTINATIONS = Destinations(CLASSES, POLICY, {OVER_ACCOUNT: OVER_LIMITS})


if os.environ.get(CLASSES_ENV):
    use_classes()

PLACEHOLDER_UUID = "00000000-0000-4000-8000-000000000000"


def account(i: int) -> str:
    return f"acct{i:05d}"


def limits_for(name: str) -> Limits:
    return OVER_LIMITS if name == OVER_ACCOUNT else POLICY


def random_uuids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuidlib.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def schedule(calls: int) -> list[tuple[str, int]]:
    """(event name, call index) in wire order: call i is answered ANSWER_LAG and hung up
    HANGUP_LAG creations later; the pass ends with every call hung up."""
    out: list[tuple[str, int]] = []
    for step in range(calls + HANGUP_LAG):
        if step < calls:
            out.append(("CHANNEL_CREATE", step))
        if 0 <= step - ANSWER_LAG < calls:
            out.append(("CHANNEL_ANSWER", step - ANSWER_LAG))
        if 0 <= step - HANGUP_LAG < calls:
            out.append(("CHANNEL_HANGUP_COMPLETE", step - HANGUP_LAG))
    return out


def render(name: str, uuid: str, acct: str | None, seq: int, created_us: int) -> bytes:
    """One framed event (outer Content-Length/Content-Type included)."""
    ts = created_us if name == "CHANNEL_CREATE" else created_us + 2_000_000
    return render_event(name, uuid, account=acct, seq=seq, ts_us=ts, created_us=created_us,
                        answered_us=created_us + 1_000_000, caller=f"sip{seq % 997}")


class PassBuffer:
    """One pass as one bytearray, with its frame boundaries and the offsets of every uuid."""

    def __init__(self, calls: int, accounts: int, seed: int = 1) -> None:
        uuids = random_uuids(calls, seed)
        buf = bytearray()
        bounds = [0]
        offsets: list[int] = []
        firsts = [0]  # offsets[firsts[i]:firsts[i + 1]] are the uuids of frame i
        for seq, (name, i) in enumerate(schedule(calls), start=1000):
            acct = account(i % accounts) if (i % 2 == 0 or name != "CHANNEL_CREATE") else None
            frame = render(name, uuids[i], acct, seq, BASE_US + i * 1000)
            needle = uuids[i].encode()
            pos = frame.find(needle)
            while pos >= 0:
                offsets.append(len(buf) + pos)
                pos = frame.find(needle, pos + len(needle))
            buf += frame
            bounds.append(len(buf))
            firsts.append(len(offsets))
        self.buf = buf
        self.bounds = bounds
        self.offsets = offsets
        self.firsts = firsts
        self.events = len(bounds) - 1

    def patch(self, n: int) -> None:
        """Make this buffer pass number ``n`` (distinct uuids for every n < 2**32)."""
        prefix = b"%08x" % n
        buf = self.buf
        for off in self.offsets:
            buf[off:off + 8] = prefix

    def frame(self, i: int, n: int) -> bytes:
        """Frame ``i`` of pass ``n`` (patches only that frame: a few microseconds)."""
        prefix = b"%08x" % n
        buf = self.buf
        for off in self.offsets[self.firsts[i]:self.firsts[i + 1]]:
            buf[off:off + 8] = prefix
        return bytes(buf[self.bounds[i]:self.bounds[i + 1]])


def breach_frames(n: int, seed: int = 2) -> list[tuple[str, bytes, bytes]]:
    """(uuid, CHANNEL_CREATE of OVER_ACCOUNT, the CHANNEL_HANGUP_COMPLETE after its uuid_kill)."""
    out = []
    for k, uuid in enumerate(random_uuids(n, seed)):
        created = BASE_US + k * 1000
        create = render("CHANNEL_CREATE", uuid, OVER_ACCOUNT, 900 + k, created)
        gone = render_event("CHANNEL_HANGUP_COMPLETE", uuid, account=OVER_ACCOUNT, seq=900 + k,
                            answered=False, cause="CALL_REJECTED", ts_us=created + 1000,
                            created_us=created)
        out.append((uuid, create, gone))
    return out


def event_bodies() -> dict[tuple[str, bool], bytes]:
    """Plain event bodies (no outer frame) with PLACEHOLDER_UUID and account ``acct00000``,
    keyed by (event name, carries the account)."""
    out = {}
    for name in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"):
        for with_account in (True, False):
            frame = render(name, PLACEHOLDER_UUID, account(0) if with_account else None, 1000,
                           BASE_US)
            out[(name, with_account)] = frame.split(b"\n\n", 1)[1]
    return out
