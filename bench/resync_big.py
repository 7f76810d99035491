"""``python -m bench.resync_big [--channels 20000]``: a huge reconciliation, measured.

The switch (the simulator, in its own process so that building its ~17 MB answer does not
stall this one) holds N answered channels and creates a call of an account whose limit is 0
every 20 ms: each must be killed.  This process runs the real :class:`Guard`; it connects,
fetches and applies the channel list (over the reconciliation's own connection) while the
calls keep coming.  Reported: the time to fetch, parse and apply the list, the longest stall
of this process's hub meanwhile, and how long the over-limit calls created while the list was
being read, parsed and applied waited for their ``uuid_kill`` (as seen by the switch).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from typing import Any

import gevent
import gevent.select

from bench.net import quiet_logging
from esl_guard import snapshot
from esl_guard.config import Config, NodeConfig
from esl_guard.model import Limits
from esl_guard.service import Guard

PASSWORD = "ClueCon"
BURST = "burst"


def switch(conn: Any, channels: int, period: float) -> None:
    """The child process: a FakeFreeSWITCH with ``channels`` calls and a burst of over-limit
    calls; answers ``stop`` with the kill latencies and the moments `show` was answered."""
    from esl_guard.simulator import FakeFreeSWITCH
    from esl_guard.simulator import api as api_mod

    fs = FakeFreeSWITCH(password=PASSWORD).start()
    for i in range(channels):
        fs.answer(fs.create_call(f"acct{i % 100}", account_on="create"))
    created: dict[str, float] = {}
    kills: list[tuple[float, float]] = []
    shows: list[float] = []
    real_kill, real_show = fs.kill, api_mod._APIS["show"]

    def kill(uuid: str, cause: str = "NORMAL_CLEARING") -> Any:
        t = created.pop(uuid, None)
        if t is not None:
            kills.append((t, time.monotonic() - t))
        return real_kill(uuid, cause)

    def show(sim: Any, args: str) -> Any:
        out = real_show(sim, args)
        shows.append(time.monotonic())  # the answer is queued right after this
        return out

    fs.kill = kill  # type: ignore[method-assign]
    api_mod._APIS["show"] = show

    def burst() -> None:
        while True:
            created[fs.create_call(BURST, account_on="create")] = time.monotonic()
            gevent.sleep(period)

    conn.send(("ready", fs.port))
    gevent.select.select([conn.fileno()], [], [])
    conn.recv()
    runner = gevent.spawn(burst)
    gevent.select.select([conn.fileno()], [], [])
    conn.recv()
    runner.kill()
    conn.send(("done", kills, shows))


def run(channels: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=switch, args=(child, channels, 0.02), daemon=True)
    proc.start()
    gevent.select.select([parent.fileno()], [], [], 300)
    _, port = parent.recv()
    node = NodeConfig(name="n", port=port, password=PASSWORD, resync_interval=3600.0,
                      heartbeat_interval=3600.0, resync_timeout=300.0)
    config = Config(nodes=(node,), policy=Limits(max_concurrent_calls=1000),
                    accounts={BURST: Limits(max_concurrent_calls=0)})
    guard = Guard(config)
    times: dict[str, float] = {}
    real_parse, real_resync = snapshot.parse_channels, guard.tracker.resync

    def parse(*args: Any, **kwargs: Any) -> Any:
        times["parse_start"] = time.monotonic()
        try:
            return real_parse(*args, **kwargs)
        finally:
            times["parse_end"] = time.monotonic()

    def resync(*args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return real_resync(*args, **kwargs)
        finally:
            times["apply_start"], times["apply_end"] = t0, time.monotonic()

    snapshot.parse_channels = parse  # type: ignore[assignment]
    guard.tracker.resync = resync  # type: ignore[method-assign]
    stalls: list[tuple[float, float, float]] = []  # (start, wall, CPU of this thread)

    def monitor() -> None:
        last, last_cpu = time.monotonic(), time.thread_time()
        while True:
            gevent.sleep(0.001)
            now, cpu = time.monotonic(), time.thread_time()
            stalls.append((last, now - last, cpu - last_cpu))
            last, last_cpu = now, cpu

    mon = gevent.spawn(monitor)
    parent.send("go")
    started = time.monotonic()
    guard.start()
    marks = {"connect": started, "first": _wait_resyncs(guard, 1, started + 300)}
    gevent.sleep(0.5)
    first_times = dict(times)
    guard.sync["n"].next_resync = 0.0  # a periodic reconciliation, now
    marks["periodic"] = _wait_resyncs(guard, 2, time.monotonic() + 300)
    gevent.sleep(1.0)  # a second of calls after it, for comparison
    parent.send("stop")
    gevent.select.select([parent.fileno()], [], [], 60)
    _, kills, shows = parent.recv()
    mon.kill()
    guard.stop()
    proc.join(5)
    snapshot.parse_channels = real_parse  # type: ignore[assignment]

    def window(answered: float, applied: float, phase_times: dict[str, float]) -> dict[str, Any]:
        lat = [lat for t, lat in kills if answered <= t <= applied]
        gaps = [(t, g, c) for t, g, c in stalls if answered <= t <= applied]
        return {
            "answer_to_applied_s": round(applied - answered, 3),
            "parse_s": round(phase_times["parse_end"] - phase_times["parse_start"], 3),
            "apply_s": round(phase_times["apply_end"] - phase_times["apply_start"], 3),
            # a stall's wall time includes the time the OS gave the CPU to other processes;
            # its CPU time is what this process itself spent without yielding
            "max_hub_stall_ms": round(1000 * max((g for _, g, _ in gaps), default=0.0), 1),
            "max_hub_stall_cpu_ms": round(1000 * max((c for _, _, c in gaps), default=0.0), 1),
            "phases_after_answer_s": {k: round(v - answered, 3)
                                      for k, v in sorted(phase_times.items())},
            "longest_stalls_at_s_wall_cpu_ms": [
                (round(t - answered, 3), round(1000 * g, 1), round(1000 * c, 1))
                for t, g, c in sorted(gaps, key=lambda s: -s[2])[:3]],
            "kill_latency_ms": _summary(lat),
        }

    return {
        "channels": channels, "tracked": guard.tracker.live_calls(),
        "first_resync_connect_to_applied_s": round(marks["first"] - started, 3),
        # after a connect, events wait for the first list (up to command_timeout) by design
        "first_resync": window(shows[0], marks["first"], first_times),
        "periodic": window(shows[1], marks["periodic"], times),
        "kill_latency_after_ms": _summary([lat for t, lat in kills if t > marks["periodic"]]),
    }


def _wait_resyncs(guard: Guard, n: int, deadline: float) -> float:
    ok = guard.metrics.resyncs.labels("n", "ok")
    while ok._value.get() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"resync {n} did not succeed")
        gevent.sleep(0.005)
    return time.monotonic()


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ms = sorted(1000 * v for v in values)
    return {"p50": round(statistics.median(ms), 1), "max": round(ms[-1], 1), "n": len(ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resync_big", description=__doc__)
    parser.add_argument("--channels", type=int, default=20_000)
    args = parser.parse_args(argv)
    quiet_logging()
    print(json.dumps(run(args.channels), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
