"""``python -m bench [--quick] [--json PATH] [--strict]``: run the five measurements, print a
table with PASS/FAIL against the targets, write the JSON.  Exit 0 when every measurement ran
(FAILs included, unless ``--strict``), 1 on FAIL with ``--strict``, 2 when a measurement broke.
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import core, failover, net, replay

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"
NAMES = ("throughput", "baselines", "latency", "memory", "scaling")


@dataclass(frozen=True)
class Sizes:
    calls_per_pass: int  # one pass = 3 events per call (CREATE, ANSWER, HANGUP_COMPLETE)
    passes: int  # daemon and bare read: passes * 3 * calls_per_pass events
    greenswitch_passes: int  # greenswitch: the first passes of the same stream (it is slow and
    #                          its reader queues every parsed event: memory grows with the run)
    rounds: int  # daemon and bare read runs, interleaved; the median is reported
    latency_s: float
    breaches: int
    memory_calls: int
    memory_accounts: int
    scaling_sizes: tuple[int, ...]
    churn: int


FULL = Sizes(2000, 25, 2, 5, 8.0, 400, 100_000, 10_000, (1_000, 10_000, 100_000), 20_000)
QUICK = Sizes(1000, 4, 1, 1, 1.5, 60, 20_000, 2_000, (1_000, 10_000, 100_000), 2_000)

ACCOUNTS = 1000
BACKGROUND_RATE = 5000.0
TARGET_EPS = 60_000
TARGET_VS_GREENSWITCH = 2.0
TARGET_P99_MS = 5.0
TARGET_BYTES = 500
TARGET_SCALING = 1.2


def in_child(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh process (a clean heap for memory and scaling)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result(timeout=300)


def network(sz: Sizes) -> dict[str, Any]:
    snd = net.SenderProcess(sz.calls_per_pass, ACCOUNTS, sz.breaches)
    try:
        daemon, raw = [], []
        for _ in range(sz.rounds):
            daemon.append(net.daemon_throughput(snd, sz.passes))
            gc.collect()
            raw.append(net.raw_throughput(snd, sz.passes))
        gs = net.greenswitch_throughput(snd, sz.greenswitch_passes)
        gc.collect()
        lat = net.latency(snd, sz.latency_s, BACKGROUND_RATE)
    finally:
        snd.close()
    eps = statistics.median(r["events_per_s"] for r in daemon)
    raw_eps = statistics.median(r["events_per_s"] for r in raw)
    ev = snd.info["bytes_per_pass"] / snd.info["events_per_pass"]
    throughput = {"events_per_s": eps, "events": daemon[0]["events"], "accounts": ACCOUNTS,
                  "mean_event_bytes": ev, "mb_per_s": eps * ev / 1e6,
                  "rounds": [r["events_per_s"] for r in daemon],
                  "seconds": [r["seconds"] for r in daemon],
                  "target": f">= {TARGET_EPS:,} events/s", "pass": eps >= TARGET_EPS}
    vs_gs = eps / gs["events_per_s"]
    baselines = {"greenswitch_events_per_s": gs["events_per_s"], "greenswitch_events": gs["events"],
                 "raw_read_events_per_s": raw_eps, "raw_read_mb_per_s": raw_eps * ev / 1e6,
                 "raw_read_rounds": [r["events_per_s"] for r in raw],
                 "daemon_vs_greenswitch": vs_gs, "daemon_vs_raw_read": eps / raw_eps,
                 "target": f"daemon >= {TARGET_VS_GREENSWITCH:g}x greenswitch",
                 "pass": vs_gs >= TARGET_VS_GREENSWITCH}
    latency = {**lat, "background_target_rate": BACKGROUND_RATE,
               "target": f"p99 < {TARGET_P99_MS:g} ms", "pass": lat["p99_ms"] < TARGET_P99_MS}
    return {"throughput": throughput, "baselines": baselines, "latency": latency,
            "sender": snd.info}


def pure(sz: Sizes) -> dict[str, Any]:
    mem = in_child(core.memory, sz.memory_calls, sz.memory_accounts)
    mem.update(target=f"<= {TARGET_BYTES} bytes/call (tracemalloc)",
               **{"pass": mem["bytes_per_call"] <= TARGET_BYTES})
    per = in_child(core.scaling, list(sz.scaling_sizes), sz.churn)
    costs = [v["us_per_event"] for v in per.values()]
    ratio = costs[-1] / costs[0]
    scaling = {"sizes": per, "ratio_largest_to_smallest": ratio,
               "target": f"{sz.scaling_sizes[-1]:,} within {TARGET_SCALING:g}x of "
                         f"{sz.scaling_sizes[0]:,}", "pass": ratio <= TARGET_SCALING}
    return {"memory": mem, "scaling": scaling}


def table(res: dict[str, Any]) -> str:
    t, b, la, m, s = (res[n] for n in NAMES)
    sizes = " ".join(f"{int(k) // 1000}k {v['us_per_event']:.1f}us" for k, v in s["sizes"].items())
    rows = [
        ("throughput", f"{t['events_per_s']:,.0f} events/s ({t['mb_per_s']:,.0f} MB/s, "
                       f"median of {len(t['rounds'])} x {t['events']:,} events)", t),
        ("baselines", f"greenswitch {b['greenswitch_events_per_s']:,.0f}/s, raw read "
                      f"{b['raw_read_events_per_s']:,.0f}/s: daemon/greenswitch "
                      f"{b['daemon_vs_greenswitch']:.1f}x, daemon/raw {b['daemon_vs_raw_read']:.2f}", b),
        ("latency", f"p50 {la['p50_ms']:.2f} ms, p99 {la['p99_ms']:.2f} ms, max {la['max_ms']:.2f} ms "
                    f"({la['killed']}/{la['breaches']} kills, {la['background_rate']:,.0f} bg ev/s)", la),
        ("memory", f"{m['bytes_per_call']:.0f} B/call tracemalloc, {m['rss_bytes_per_call']:.0f} B/call "
                   f"RSS ({m['calls']:,} calls / {m['accounts']:,} accounts)", m),
        ("scaling", f"{sizes} per event (x{s['ratio_largest_to_smallest']:.2f})", s),
    ]
    if "replay" in res:
        rows.append(("replay", replay.describe(res["replay"]), res["replay"]))
    if "failover" in res:
        rows.append(("failover", failover.describe(res["failover"]), res["failover"]))
    width = max(len(r[1]) for r in rows)
    twidth = max(len(r[2]["target"]) for r in rows)
    lines = [f"{'measurement':<11} {'result':<{width}}  {'target':<{twidth}}  verdict",
             "-" * (11 + width + twidth + 14)]
    lines += [f"{n:<11} {text:<{width}}  {d['target']:<{twidth}}  {'PASS' if d['pass'] else 'FAIL'}"
              for n, text, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 20 s")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--detectors", action="store_true",
                        help="every detector (issue 13) configured for every account")
    parser.add_argument("--classes", action="store_true",
                        help="destination classes and a minute budget (issue 12) for every "
                             "account")
    args = parser.parse_args(argv)
    from bench import stream

    if args.detectors:
        stream.use_detectors()
    if args.classes:
        stream.use_classes()
    sz = QUICK if args.quick else FULL
    net.quiet_logging()
    started = time.monotonic()
    print(f"esl-guard benchmark ({'quick' if args.quick else 'full'}"
          f"{', every detector on' if args.detectors else ''}"
          f"{', destination classes and minute budgets' if args.classes else ''}), "
          f"{os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}", flush=True)
    try:
        res = network(sz)
        res.update(pure(sz))
        res["replay"] = replay.row(args.quick, in_child)
        res["failover"] = failover.row(args.quick, in_child)
    except (net.BenchError, OSError, TimeoutError, AssertionError) as exc:
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    res = {"mode": "quick" if args.quick else "full", "time": time.time(),
           "elapsed_s": time.monotonic() - started, "python": platform.python_version(),
           "cpus": os.cpu_count(), "sizes": sz.__dict__, **res,
           "pass": all(res[n]["pass"] for n in (*NAMES, "replay", "failover"))}
    print(table(res))
    print(f"elapsed {res['elapsed_s']:.1f} s; JSON: {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 1 if args.strict and not res["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
