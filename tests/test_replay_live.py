"""Issue 15: replaying a capture decides exactly what the live daemon decides on the same bytes.

The live side is the real :class:`esl_guard.service.Guard` connected over TCP to the ESL
simulator, which sends it the event frames of the real capture ``plain_load.bin``: the
daemon's reader, frame splitter, filters, tracker and dispatch (``uuid_kill`` and
``hash insert`` over the wire, audit rows to its writer) all run as in production.  Only its
clock is the recorded one, as if the traffic were happening now: before each event the clock
moves to the event's ``Event-Date-Timestamp``, and the daemon's ticker runs at every 0.1 s
(the tracker's timer resolution) of that clock on the way.  Nothing sleeps.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from esl_guard.config import load_config
from esl_guard.events import CALL_EVENTS, event_name, header_value
from esl_guard.frames import FrameReader
from esl_guard.replay.cli import replay
from esl_guard.service import Guard
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.tracker import TIMER_SLOTS_PER_SECOND
from tests.harness import node_section, wait_for
from tests.test_replay import replay_args

CAPTURE = Path(__file__).parent / "fixtures" / "esl" / "plain_load.bin"
POLICY = """max_concurrent_calls = 3
max_call_rate = 10/5s
max_call_duration = 2s
lock_after = 3/10s
lock_duration = 5s
"""
STAMP = b"\nEvent-Date-Timestamp: "
#: Destination classes (issue 12) on the capture's numbers: its calls to 9001 are "premium"
#: (a class limit tighter than the account's), the ones to 9004 are exempt emergency calls.
CLASSES = """[destination:premium]
prefixes = 9001
max_concurrent_calls = 2
max_call_duration = 1500ms
[destination:emergency]
prefixes = 911 9004
exempt = true
"""
#: Minute budgets, on the capture stretched 10 times (a budget is at least a minute, the
#: capture lasts 13 s): the account's and the premium class's.
BUDGETS = """max_concurrent_calls = 3
max_minutes = 2/1m
lock_after = 3/1m
lock_duration = 30s
[destination:premium]
prefixes = 9001
max_minutes = 1/1m
[destination:emergency]
prefixes = 911 9004
exempt = true
"""
BASE_RULES = {"max_concurrent_calls", "max_call_duration", "lock_after"}


def capture_events(stretch: int = 1, emergency: bool = False) -> list[bytes]:
    """The capture's events; ``stretch``: its recorded clock slowed down that many times
    (``Event-Date-Timestamp`` only: the same number of digits); ``emergency``: acct19's calls
    dial 911 instead of 9001 (the capture's calls to 9004 carry their account only on their
    CHANNEL_HANGUP_COMPLETE, so they are never tracked).  Both sides get the same bytes."""
    bodies: list[bytes] = []
    FrameReader().feed(CAPTURE.read_bytes(), bodies.append)
    if stretch != 1:
        t0 = int(recorded_time(bodies[0]) * 1e6)
        bodies = [re.sub(rb"(\nEvent-Date-Timestamp: )(\d+)",
                         lambda m: m[1] + b"%d" % (t0 + (int(m[2]) - t0) * stretch), b)
                  for b in bodies]
    if emergency:
        bodies = [b.replace(b"\nCaller-Destination-Number: 9001\n",
                            b"\nCaller-Destination-Number: 911\n")
                  if b"\nCaller-Username: acct19\n" in b else b for b in bodies]
    return bodies


def recorded_time(body: bytes) -> float:
    value = header_value(body, STAMP)
    assert value is not None
    return int(value) / 1e6


class RecordedClock:
    """The daemon's clock (monotonic and wall) during the test: the recording's time."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Writer:
    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def submit(self, row: dict[str, object]) -> None:
        self.rows.append(row)


@pytest.mark.parametrize(("policy", "stretch", "rules"), [
    (POLICY, 1, BASE_RULES | {"locked"}),
    (POLICY + "dry_run = true\n", 1, BASE_RULES),
    (POLICY + CLASSES, 1, BASE_RULES | {"locked"}),
    (BUDGETS, 10, {"max_concurrent_calls", "max_minutes", "lock_after", "locked"}),
], ids=["policy", "dry_run", "classes", "minute_budgets"])
def test_replay_of_plain_load_equals_the_live_daemon(tmp_path: Path, fs: FakeFreeSWITCH,
                                                     policy: str, stretch: int,
                                                     rules: set[str]) -> None:
    conf = tmp_path / "guard.conf"
    conf.write_text(node_section(fs, resync_interval="1h")
                    + f"[database]\nurl = sqlite:///{tmp_path / 'g.db'}\n[policy]\n{policy}")
    conf.chmod(0o600)
    bodies = capture_events(stretch, emergency="[destination:" in policy)
    stream = b"".join(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%b" % (len(b), b)
                      for b in bodies)
    capture = tmp_path / "plain_load.bin"
    capture.write_bytes(stream)
    calls = [b for b in bodies if (event_name(b) or "") in CALL_EVENTS]
    clock = RecordedClock(recorded_time(calls[0]))
    writer = Writer()
    guard = Guard(load_config(conf), writer=writer, clock=clock, wall=clock)
    live_event = guard.node_event

    def node_event(node: str, name: str, body: bytes) -> None:
        if name in CALL_EVENTS:
            t = recorded_time(body)
            slot = int(clock.now * TIMER_SLOTS_PER_SECOND) + 1
            while slot / TIMER_SLOTS_PER_SECOND < t:  # the ticker, on the recorded clock
                clock.now = slot / TIMER_SLOTS_PER_SECOND
                guard.tick()
                slot += 1
            clock.now = max(clock.now, t)
        live_event(node, name, body)

    guard.node_event = node_event  # type: ignore[method-assign]
    guard.start()
    try:
        assert wait_for(lambda: guard.sync["default"].ok, timeout=10)
        fs.send_raw(stream)
        assert wait_for(lambda: sum(guard.metrics.event_counts[n] for n in CALL_EVENTS)
                        == len(calls), timeout=20)
        guard.tick()  # the recording's last moment
        dry = "dry_run = true" in policy
        assert wait_for(lambda: dry or any(c.startswith("api uuid_kill") for c in fs.commands))
    finally:
        guard.stop()

    fields = ("account", "kind", "rule", "uuid", "dry_run", "limit", "observed", "detail",
              "origin", "destination", "destination_class")
    live = [(round(float(r["time"]), 6), *(r[k] for k in fields))
            for r in writer.rows if r["op"] == "audit"]
    out = tmp_path / "replay.jsonl"
    with out.open("w") as f:
        problems = replay(replay_args(conf, [capture], as_json=True), f)
    assert problems.total == 0
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    summary = docs.pop()
    replayed = [(round(d["epoch"], 6), *(d[k] for k in fields)) for d in docs]
    assert len(live) > 100  # every rule fires: concurrency, duration, lock, locked, unlock
    assert {row[3] for row in live} >= rules
    if "[destination:" in policy:  # class rules fired, emergency calls were only logged
        assert any(row[11] == "premium" and row[2] == "hangup" for row in live)
        emergency = {row[4] for row in live if row[11] == "emergency"}
        assert emergency and {row[2] for row in live if row[4] in emergency} == {"exempt"}
    # A lock expires at its exact moment in the replay, at the next tick of the ticker in the
    # daemon (whose is_locked() already reads the clock itself, so no call is treated
    # differently in between): the unlock rows may differ by less than one tick in time, so
    # decisions of the events recorded within that tick may come before them in the daemon.
    tick = 1 / TIMER_SLOTS_PER_SECOND
    assert [r for r in replayed if r[2] != "unlock"] == [r for r in live if r[2] != "unlock"]
    unlocks = [r for r in replayed if r[2] == "unlock"]
    live_unlocks = [r for r in live if r[2] == "unlock"]
    by_account = sorted(unlocks, key=lambda u: (u[1], u[0]))
    for r, lv in zip(by_account, sorted(live_unlocks, key=lambda u: (u[1], u[0])), strict=True):
        assert r[1:] == lv[1:] and 0 <= lv[0] - r[0] < tick, (r, lv)
    killed = [c.split()[2] for c in fs.commands if c.startswith("api uuid_kill ")]
    hangups = [d["uuid"] for d in docs if d["kind"] == "hangup" and not d["dry_run"]]
    assert killed == ([] if dry else hangups)  # what went over the wire to "FreeSWITCH"

    assert summary["calls_seen"] == 210
    assert summary["calls_hung_up"] == len(set(hangups))
