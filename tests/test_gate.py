"""The admission gate (issue 12): is an account's NEXT call refused by the dialplan?  The pure
rule (explicit clocks), the tracker keeping it exact, and the real capture of a far end that
answers at once."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.config import load_config
from esl_guard.events import CALL_EVENTS, EXECUTE_EVENTS, EventDecoder, event_name, execute_wanted
from esl_guard.frames import FrameReader
from esl_guard.model import Action, ActionKind, CallEvent, Limits, Lock, Rate, Rule
from esl_guard.policy import (
    GATE_TTL,
    AccountView,
    Gate,
    gate_key,
    gate_realm,
    gate_value,
    next_call_gate,
    parse_hash_dump,
    stale_gate_keys,
)
from esl_guard.service import Guard
from esl_guard.simulator import FakeFreeSWITCH
from esl_guard.tracker import Tracker
from tests.harness import Harness, node_section, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "esl"
WALL = 1_800_000_000.0
BUSY = Gate("busy", Rule.CONCURRENCY)


# ---------------------------------------------------------------- the pure rule
@pytest.mark.parametrize(("live", "creations", "limits", "now", "expected"), [
    # max_concurrent_calls = 2: blocked from the second live call on, whatever the time
    (1, (), Limits(max_concurrent_calls=2), 5.0, None),
    (2, (), Limits(max_concurrent_calls=2), 5.0, BUSY),
    (3, (), Limits(max_concurrent_calls=2), 5.0, BUSY),
    (0, (), Limits(max_concurrent_calls=0), 5.0, BUSY),
    # max_call_rate = 2/10s: two attempts in (now - 10, now] block; it reopens when the older
    # of the two is exactly 10 s old (it has left the window then)
    (0, (1.0,), Limits(max_call_rate=Rate(2, 10.0)), 5.0, None),
    (0, (1.0, 4.0), Limits(max_call_rate=Rate(2, 10.0)), 5.0, Gate("rate", Rule.RATE, 11.0)),
    (0, (1.0, 4.0), Limits(max_call_rate=Rate(2, 10.0)), 10.999, Gate("rate", Rule.RATE, 11.0)),
    (0, (1.0, 4.0), Limits(max_call_rate=Rate(2, 10.0)), 11.0, None),
    (0, (0.5, 1.0, 4.0), Limits(max_call_rate=Rate(2, 10.0)), 5.0, Gate("rate", Rule.RATE, 11.0)),
    # both: the rate first (the admission rules' order), busy once the window reopened
    (2, (1.0, 4.0), Limits(max_concurrent_calls=2, max_call_rate=Rate(2, 10.0)), 5.0,
     Gate("rate", Rule.RATE, 11.0)),
    (2, (1.0, 4.0), Limits(max_concurrent_calls=2, max_call_rate=Rate(2, 10.0)), 11.0, BUSY),
    # a rule that refuses nothing pushes nothing: dry run, warn_only
    (5, (1.0, 4.0), Limits(max_concurrent_calls=2, max_call_rate=Rate(2, 10.0), dry_run=True),
     5.0, None),
    (5, (), Limits(max_concurrent_calls=2, warn_only=frozenset({"max_concurrent_calls"})), 5.0,
     None),
    (0, (1.0, 4.0), Limits(max_call_rate=Rate(2, 10.0), warn_only=frozenset({"max_call_rate"})),
     5.0, None),
    # no limit
    (50, (1.0, 2.0, 3.0), Limits(), 5.0, None),
])
def test_next_call_gate(live: int, creations: tuple[float, ...], limits: Limits, now: float,
                        expected: Gate | None) -> None:
    view = AccountView("acme", live, creations)
    assert next_call_gate(view, limits, now, WALL) == expected


def test_a_lock_is_not_the_gate_s_business() -> None:
    """Locks have their own realm and dialplan check (403): the gate ignores them."""
    view = AccountView("acme", 0, (), lock=Lock("acme", "l1", None, "manual", "manual"))
    assert next_call_gate(view, Limits(max_concurrent_calls=1), 0.0, WALL) is None


def test_gate_values_expire_never_late() -> None:
    # a rate gate ends when its window reopens, rounded down: the dialplan never refuses late
    assert gate_value(Gate("rate", Rule.RATE, 11.0), 5.0, WALL + 0.75) == f"rate:{int(WALL) + 6}"
    # a busy gate has no end of its own: GATE_TTL after it was pushed (and pushed again)
    assert gate_value(BUSY, 5.0, WALL) == f"busy:{int(WALL + GATE_TTL)}"


def test_key_scheme_and_realm() -> None:
    assert gate_realm("esl_guard") == "admit_esl_guard"
    assert gate_key("acme") == "acme"
    assert gate_key("acme", "premium") == "acme:premium"
    # mod_hash names are <realm>_<key>: the gate realm's can never be a lock's
    lock_name, gate_name = "esl_guard_admit_x", f"{gate_realm('esl_guard')}_x"
    assert lock_name != gate_name and not gate_name.startswith("esl_guard_")


def test_stale_gate_keys_from_a_real_dump() -> None:
    # hash_dump db <realm> lists every name containing "<realm>_", the lock realm's included
    body = ("D/admit_esl_guard_acme/busy:1/\n" "D/admit_esl_guard_bob/rate:2\n"
            "D/esl_guard_acme/forever\n" "D/x_admit_esl_guard_y/1\n")
    entries = parse_hash_dump(body.replace("1/\n", "1\n"), gate_realm("esl_guard"))
    assert entries == {"acme": "busy:1", "bob": "rate:2"}
    assert stale_gate_keys(entries, {"bob": Gate("rate", Rule.RATE, 3.0)}) == ["acme"]


# ---------------------------------------------------------------- the tracker keeps it exact
UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(8)]


def tracker(**limits: object) -> tuple[Tracker, dict[str, Limits]]:
    policy = {"acme": Limits(**limits)}  # type: ignore[arg-type]
    return Tracker(lambda a: policy.get(a, Limits()), lambda: WALL), policy


def start(tr: Tracker, i: int, now: float, account: str = "acme") -> list:
    return tr.on_event(CallEvent("CHANNEL_CREATE", "fs1", UUIDS[i], account), now)


def end(tr: Tracker, i: int, now: float) -> None:
    assert tr.known_event("fs1", "CHANNEL_HANGUP", UUIDS[i], now)


def test_concurrency_gate_follows_the_calls_and_clears_on_the_hangup_event() -> None:
    tr, _ = tracker(max_concurrent_calls=2)
    start(tr, 0, 1.0)
    assert tr.take_gate_changes() == [] and "acme" not in tr.gates
    start(tr, 1, 2.0)
    assert tr.take_gate_changes() == ["acme"] and tr.gates["acme"] == BUSY
    assert [a.kind for a in start(tr, 2, 3.0)][:2] == [ActionKind.VIOLATION, ActionKind.HANGUP]
    assert tr.take_gate_changes() == []  # the refused call changed nothing
    end(tr, 2, 3.5)  # the refused call's own end: still 2 up
    assert tr.take_gate_changes() == [] and "acme" in tr.gates
    end(tr, 0, 4.0)  # the first HANGUP of a live call: the next call is admitted at once
    assert tr.take_gate_changes() == ["acme"] and "acme" not in tr.gates
    start(tr, 3, 5.0)
    assert tr.take_gate_changes() == ["acme"] and tr.gates["acme"] == BUSY


def test_rate_gate_reopens_on_the_tick_at_the_right_moment() -> None:
    tr, _ = tracker(max_call_rate=Rate(2, 10.0))
    start(tr, 0, 1.0)
    start(tr, 1, 4.0)
    assert tr.take_gate_changes() == ["acme"] and tr.gates["acme"] == Gate("rate", Rule.RATE, 11.0)
    end(tr, 0, 5.0)
    end(tr, 1, 5.0)
    tr.tick(10.9)
    assert tr.take_gate_changes() == [] and "acme" in tr.gates
    tr.tick(11.0)
    assert tr.take_gate_changes() == ["acme"] and "acme" not in tr.gates
    start(tr, 2, 14.5)  # 4.0 and 14.5 in (4.5, 14.5]: only one
    assert tr.take_gate_changes() == [] and "acme" not in tr.gates
    start(tr, 3, 15.0)
    assert tr.take_gate_changes() == ["acme"] and tr.gates["acme"].reopens == 24.5


def test_a_refused_attempt_moves_the_rate_gate_later() -> None:
    tr, _ = tracker(max_call_rate=Rate(2, 10.0))
    start(tr, 0, 1.0)
    start(tr, 1, 4.0)
    tr.take_gate_changes()
    assert [a.rule for a in start(tr, 2, 6.0) if a.kind is ActionKind.HANGUP] == [Rule.RATE]
    # every attempt counts in the window (as esl-guard decides): it reopens at 4 + 10 now
    assert tr.take_gate_changes() == ["acme"] and tr.gates["acme"].reopens == 14.0
    tr.tick(11.0)
    assert "acme" in tr.gates and tr.take_gate_changes() == []
    tr.tick(14.0)
    assert "acme" not in tr.gates and tr.take_gate_changes() == ["acme"]


def test_a_reload_opens_and_closes_gates() -> None:
    tr, policy = tracker(max_concurrent_calls=2)
    start(tr, 0, 1.0)
    policy["acme"] = Limits(max_concurrent_calls=1)
    tr.retime(2.0)
    assert tr.take_gate_changes() == ["acme"] and tr.gates["acme"] == BUSY
    policy["acme"] = Limits(max_concurrent_calls=1, dry_run=True)
    tr.retime(3.0)
    assert tr.take_gate_changes() == ["acme"] and "acme" not in tr.gates


def test_a_lost_node_and_a_lock_free_the_slots() -> None:
    tr, _ = tracker(max_concurrent_calls=1)
    start(tr, 0, 1.0)
    assert tr.take_gate_changes() == ["acme"]
    tr.forget_node("fs1", 2.0)
    assert tr.take_gate_changes() == ["acme"] and "acme" not in tr.gates
    start(tr, 1, 3.0)
    tr.take_gate_changes()
    tr.apply_lock(Lock("acme", "l1", None, "manual", "manual"))  # its call is hung up
    tr.tick(3.1)
    assert tr.take_gate_changes() == ["acme"] and "acme" not in tr.gates


# ---------------------------------------------------------------- the real capture (issue 12)
def capture(name: str) -> list[tuple[str, bytes]]:
    out = []
    for f in FrameReader().feed((FIXTURES / name).read_bytes()):
        if f.content_type == "text/event-plain":
            ev_name = event_name(f.body) or ""
            out.append((ev_name, f.body))
    return out


def test_the_daemon_s_filters_pass_only_the_set_and_the_bridge() -> None:
    """plain_answer_now_filtered.bin is what the real switch sent esl-guard's subscription and
    filters; replaying plain_answer_now.bin (event plain ALL) with execute_wanted gives the
    same EXECUTE events."""
    filtered = capture("plain_answer_now_filtered.bin")
    assert all(name in CALL_EVENTS or name == "HEARTBEAT" for name, _ in filtered)
    dec = EventDecoder("fs1")
    apps = [(name, dec.decode(body, name).account) for name, body in filtered
            if name in EXECUTE_EVENTS]
    assert apps == [("CHANNEL_EXECUTE", None), ("CHANNEL_EXECUTE_COMPLETE", "acct1"),
                    ("CHANNEL_EXECUTE", "acct1"), ("CHANNEL_EXECUTE_COMPLETE", "acct1")]
    everything = capture("plain_answer_now.bin")
    kept = [name for name, body in everything if name in EXECUTE_EVENTS
            and execute_wanted(body, len(body), "accountcode")]
    assert kept == [name for name, _ in apps]
    assert len([n for n, _ in everything if n in EXECUTE_EVENTS]) >= len(kept)


def test_a_call_answered_at_once_is_refused_before_its_answer() -> None:
    """The far end answers at once: no CHANNEL_PROGRESS.  The over-limit call is refused on
    the set's CHANNEL_EXECUTE_COMPLETE, the first event carrying its account, before any
    CHANNEL_ANSWER (of the B-leg or of the A-leg)."""
    dec = EventDecoder("fs1")
    tr = Tracker(lambda a: Limits(max_concurrent_calls=0), lambda: WALL)
    decided = None
    names = []
    for i, (name, body) in enumerate(capture("plain_answer_now_filtered.bin")):
        names.append(name)
        if name not in CALL_EVENTS:
            continue
        ev = dec.lazy(body, name)
        assert ev is not None
        actions = tr.on_event(ev, float(i))
        if any(a.kind is ActionKind.HANGUP for a in actions):
            decided = i
            assert name == "CHANNEL_EXECUTE_COMPLETE" and ev.account == "acct1"
    assert decided is not None and "CHANNEL_ANSWER" not in names[:decided]
    assert "CHANNEL_PROGRESS" not in names


# ---------------------------------------------------------------- the daemon and the switch
GATE_REALM = "admit_esl_guard"


def gate_in_fs(fs: FakeFreeSWITCH, account: str) -> str | None:
    return fs.hash.get(GATE_REALM, {}).get(account)


@pytest.fixture
def h(tmp_path: Path, db_url: str, fs: FakeFreeSWITCH) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_url, fs)
    yield harness
    harness.stop()


def test_the_daemon_pushes_the_gate_and_clears_it_when_a_call_ends(
        h: Harness, fs: FakeFreeSWITCH) -> None:
    fs.hash[GATE_REALM] = {"gone": "busy:9999999999"}  # left by an earlier run: stale
    d = h.start("max_concurrent_calls = 5", extra="[account:acme]\nmax_concurrent_calls = 1\n")
    assert wait_for(lambda: gate_in_fs(fs, "gone") is None), "stale entries go on connect"
    assert any(c.startswith("filter Application-Data") for c in fs.commands)
    first = fs.create_call("acme", account_on="create")
    assert wait_for(lambda: (gate_in_fs(fs, "acme") or "").startswith("busy:"))
    until = int((gate_in_fs(fs, "acme") or "busy:0").split(":")[1])
    assert 0 < until - d.guard.wall() <= 60
    fs.hangup(first)
    assert wait_for(lambda: gate_in_fs(fs, "acme") is None), "the call's end opens the gate"
    fs.create_call("acme", account_on="create")
    assert wait_for(lambda: gate_in_fs(fs, "acme") is not None)
    fs.hash[GATE_REALM] = {"acme": "busy:1", "bob": "rate:9999999999"}  # meddled with
    fs.drop_connections()  # the link broke: on the reconnect the gate realm is made exact
    assert wait_for(lambda: set(fs.hash.get(GATE_REALM, {})) == {"acme"}
                    and gate_in_fs(fs, "acme") != "busy:1", timeout=10)
    fs.restart()  # every call ends with FreeSWITCH: so does the gate
    assert wait_for(lambda: gate_in_fs(fs, "acme") is None and d.guard.tracker.active("acme") == 0)
    fs.create_call("acme", account_on="create")
    assert wait_for(lambda: gate_in_fs(fs, "acme") is not None, timeout=10)
    assert h.stop() == 0
    assert gate_in_fs(fs, "acme") is None, "a stopped daemon leaves no refusal behind"


def test_the_daemon_refuses_on_the_set_over_tcp(tmp_path: Path, fs: FakeFreeSWITCH) -> None:
    """The real daemon, over TCP, fed the real bytes its subscription got from the switch
    (plain_answer_now_filtered.bin): with acct1 at its limit (0), the hangup is decided on the
    set's CHANNEL_EXECUTE_COMPLETE, the first event carrying the account, before any ANSWER."""
    conf = tmp_path / "guard.conf"
    conf.write_text(node_section(fs, resync_interval="1h")
                    + f"[database]\nurl = sqlite:///{tmp_path / 'g.db'}\n[policy]\n"
                    "[account:acct1]\nmax_concurrent_calls = 0\n")
    conf.chmod(0o600)
    guard = Guard(load_config(conf))
    seen: list[str] = []
    decided: list[str] = []
    live_event, live_dispatch = guard.node_event, guard.dispatch

    def node_event(node: str, name: str, body: bytes) -> None:
        seen.append(name)
        live_event(node, name, body)

    def dispatch(actions: list[Action], t0: float | None = None) -> None:
        if any(a.kind is ActionKind.HANGUP for a in actions):
            decided.append(seen[-1])
        live_dispatch(actions, t0)

    guard.node_event = node_event  # type: ignore[method-assign]
    guard.dispatch = dispatch  # type: ignore[method-assign]
    guard.start()
    try:
        assert wait_for(lambda: guard.sync["default"].ok, timeout=10)
        assert any(c.startswith("filter Application-Data") for c in fs.commands)
        bodies = [body for _, body in capture("plain_answer_now_filtered.bin")]
        fs.send_raw(b"".join(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%b"
                             % (len(b), b) for b in bodies))
        assert wait_for(lambda: any(c.startswith("api uuid_kill") for c in fs.commands))
    finally:
        guard.stop()
    assert decided == ["CHANNEL_EXECUTE_COMPLETE"]
    assert "CHANNEL_ANSWER" not in seen[:seen.index("CHANNEL_EXECUTE_COMPLETE")]
