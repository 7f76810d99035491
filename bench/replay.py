"""The ``replay`` row: CDR rows per second through ``esl-guard replay`` on one core.

A synthetic mod_cdr_csv file (the ``example`` template, every field quoted, rows in END order as
the module writes them) of ``rows`` calls from ``accounts`` accounts, at ``rate`` calls/s with
durations from 1 s to 4 min (2% up to 3 h), is replayed in-process, from the file to the last
decision, with a policy that exercises every rule (concurrency, rate, duration, lock_after).
Decisions are formatted as JSON and discarded.  Generating the file is not timed.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

POLICY = """[freeswitch]
host = 127.0.0.1
[database]
url = sqlite:////tmp/unused.db
[policy]
max_concurrent_calls = 12
max_call_rate = 30/1m
max_call_duration = 2h
lock_after = 5/10m
lock_duration = 15m
"""


def write_cdr(path: Path, rows: int, accounts: int = 2000, rate: float = 50.0,
              seed: int = 15) -> None:
    rnd = random.Random(seed)
    t0 = 1_795_600_000.0
    ends: list[tuple[float, str]] = []
    for i in range(rows):
        start = int(t0 + i / rate)
        answered = rnd.random() < 0.8
        answer = start + rnd.randint(0, 8) if answered else None
        hold = rnd.randint(1, 240) if rnd.random() < 0.98 else rnd.randint(240, 10800)
        end = (answer if answer is not None else start) + hold
        acct = f"acct{rnd.randrange(accounts):04d}"
        uuid = f"{rnd.getrandbits(32):08x}-{rnd.getrandbits(16):04x}-4{rnd.getrandbits(12):03x}-" \
               f"a{rnd.getrandbits(12):03x}-{rnd.getrandbits(48):012x}"

        def stamp(t: float | None) -> str:
            return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
        line = ",".join(f'"{v}"' for v in (
            acct, acct, "9001", "public", stamp(start), stamp(answer), stamp(end),
            str(int(end - start)), str(int(end - answer)) if answer else "0",
            "NORMAL_CLEARING" if answered else "CALL_REJECTED", uuid, "", acct,
            "PCMU" if answered else "", "PCMU" if answered else ""))
        ends.append((end, line))
    ends.sort(key=lambda x: x[0])  # mod_cdr_csv appends each row when its call ends
    with open(path, "w") as f:
        for _, line in ends:
            f.write(line + "\n")


def measure(rows: int) -> dict[str, Any]:
    os.environ["TZ"] = "UTC"
    time.tzset()
    from esl_guard.replay.cli import replay

    with tempfile.TemporaryDirectory() as tmp:
        cdr = Path(tmp) / "Master.csv"
        conf = Path(tmp) / "policy.conf"
        conf.write_text(POLICY)
        write_cdr(cdr, rows)
        args = argparse.Namespace(config=str(conf), sources=[str(cdr)], json=True,
                                  compare=None, cdr_columns=None)
        out = io.StringIO()
        t0, c0 = time.perf_counter(), time.process_time()
        problems = replay(args, out)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        decisions = out.getvalue().count("\n") - 1
    assert problems.total == 0, problems.lines()
    return {"rows": rows, "seconds": wall, "cpu_seconds": cpu, "rows_per_s": rows / wall,
            "decisions": decisions}


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(measure(n))
