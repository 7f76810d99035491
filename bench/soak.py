"""Soak test tool (not part of the default test run).

Drives the real daemon (`esl-guard run` in its own process) with channel events from the
FreeSWITCH simulator at a steady rate, then reports the daemon's RSS growth and dropped events.
Both must be flat/zero.

    python -m bench.soak                      # 2,000 events/s for 10 minutes
    python -m bench.soak --rate 500 --minutes 0.5

Every call is CREATE, ANSWER, then its hangup events; the simulator sends only the ones the
daemon subscribes to, so the expected event count is exact.  One account has a tight limit, so
hangups are exercised too.  RSS growth is judged over the second half of the run (the first half
warms up SQLite's page cache and the account tables).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import gevent
import gevent.subprocess
from gevent import socket


def _events_per_call() -> int:
    """A call's life here is CREATE, ANSWER, HANGUP, HANGUP_COMPLETE, DESTROY; the simulator sends
    only the ones the daemon subscribes to."""
    from esl_guard.events import SUBSCRIPTION

    life = ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
            "CHANNEL_DESTROY")
    return sum(1 for name in life if name in SUBSCRIPTION.split())


EVENTS_PER_CALL = _events_per_call()
CONF = """\
[freeswitch]
host = 127.0.0.1
port = {port}
password = ClueCon

[database]
url = sqlite:///{tmp}/soak.db
journal = {tmp}/journal.jsonl

[policy]
max_concurrent_calls = 50
max_call_rate = 100000/1m

[account:tight]
max_concurrent_calls = 2

[metrics]
listen = 127.0.0.1:{metrics}

[logging]
level = warning
"""


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _scrape(port: int) -> str:
    def get() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - loopback
    return str(gevent.get_hub().threadpool.spawn(get).get(timeout=10))


def _metric_sum(text: str, name: str, label_filter: str = "") -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M):
        if label_filter in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def soak(rate: float, minutes: float, accounts: int = 200, seed: int = 1) -> dict[str, object]:
    from esl_guard.simulator import FakeFreeSWITCH

    rnd = random.Random(seed)
    fs = FakeFreeSWITCH().start()
    tmp = tempfile.mkdtemp(prefix="esl-guard-soak-")
    metrics_port = _free_port()
    conf = Path(tmp) / "esl-guard.conf"
    conf.write_text(CONF.format(port=fs.port, tmp=tmp, metrics=metrics_port))
    conf.chmod(0o600)
    log = open(Path(tmp) / "daemon.log", "wb")  # noqa: SIM115 - closed in finally
    proc = gevent.subprocess.Popen([sys.executable, "-m", "esl_guard", "run", "-c", str(conf)],
                                   env=dict(os.environ), stderr=log)
    try:
        deadline = time.monotonic() + 30
        while fs.connections == 0 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if fs.connections == 0:
            raise SystemExit("the daemon did not connect to the simulator")
        gevent.sleep(1)  # its initial resync
        calls_per_s = rate / EVENTS_PER_CALL
        started = created = 0
        t0 = time.monotonic()
        end = t0 + minutes * 60
        samples: list[tuple[float, int]] = []
        next_sample = t0
        warm = t0 + max(5.0, minutes * 60 * 0.5)  # growth is judged over the second half

        def hold(uuid: str, seconds: float) -> None:
            gevent.sleep(seconds)
            fs.hangup(uuid)

        while time.monotonic() < end:
            now = time.monotonic()
            due = int((now - t0) * calls_per_s) - started
            for _ in range(max(0, due)):
                account = "tight" if rnd.random() < 0.02 else f"acct{rnd.randrange(accounts)}"
                uuid = fs.create_call(account, account_on="create")
                fs.answer(uuid)
                gevent.spawn(hold, uuid, rnd.uniform(1.0, 10.0))
                started += 1
                created += 1
            if now >= next_sample:
                samples.append((now - t0, _rss_kib(proc.pid)))
                next_sample = now + 10
            gevent.sleep(0.01)
        for uuid in list(fs.calls()):
            fs.hangup(uuid)
        expected = created * EVENTS_PER_CALL
        received = 0.0
        drain = time.monotonic() + 60
        while time.monotonic() < drain:
            text = _scrape(metrics_port)
            received = _metric_sum(text, "esl_guard_events_total", 'event="CHANNEL_')
            if received >= expected:
                break
            gevent.sleep(0.5)
        text = _scrape(metrics_port)
        samples.append((time.monotonic() - t0, _rss_kib(proc.pid)))
        base = next((kib for t, kib in samples if t >= warm - t0), samples[0][1])
        final = samples[-1][1]
        result = {
            "rate_target": rate, "seconds": round(minutes * 60, 1),
            "rate_sent": round(expected / (minutes * 60), 1),
            "events_sent": expected, "events_received": int(received),
            "dropped_events": int(expected - received),
            "reconnects": int(_metric_sum(text, "esl_guard_esl_reconnects_total")),
            "hangups": int(_metric_sum(text, "esl_guard_actions_total", 'action="hangup"')),
            "active_calls_at_end": int(_metric_sum(text, "esl_guard_active_calls")),
            "rss_kib_after_warmup": base, "rss_kib_end": final,
            "rss_growth_pct": round(100.0 * (final - base) / base, 2) if base else None,
            "rss_samples": samples,
        }
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except gevent.Timeout:
            proc.kill()
        fs.stop()
        log.close()
        print(f"soak: daemon log in {log.name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=2000.0, help="events per second (default 2000)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    r = soak(args.rate, args.minutes)
    flat = r["rss_growth_pct"] is not None and float(r["rss_growth_pct"]) < 5.0  # type: ignore[arg-type]
    ok = r["dropped_events"] == 0 and r["reconnects"] == 0 and r["active_calls_at_end"] == 0 and flat
    print(f"soak: {r['events_sent']} events in {r['seconds']}s ({r['rate_sent']}/s), "
          f"received {r['events_received']}, dropped {r['dropped_events']}, "
          f"reconnects {r['reconnects']}, hangups {r['hangups']}, calls left {r['active_calls_at_end']}")
    print(f"soak: RSS {r['rss_kib_after_warmup']} KiB at half time -> {r['rss_kib_end']} KiB at the "
          f"end ({r['rss_growth_pct']}%)  {'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
