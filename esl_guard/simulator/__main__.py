"""``python -m esl_guard.simulator --port 8021 [--password ClueCon]``: a standalone fake switch.

Logs every command it receives. With ``--calls N`` it also keeps N random calls going.
"""
from __future__ import annotations

import argparse
import logging
import random

import gevent

from esl_guard.simulator.server import FakeFreeSWITCH

log = logging.getLogger("esl_guard.simulator")


def _traffic(fs: FakeFreeSWITCH, accounts: list[str], concurrent: int) -> None:
    while True:
        live = [u for u, info in fs.calls().items() if info["leg"] == "A"]
        if len(live) < concurrent:
            uuid = fs.create_call(random.choice(accounts), account_on="answer")
            gevent.spawn_later(random.uniform(0.2, 1.0), _answer, fs, uuid)
            gevent.spawn_later(random.uniform(2.0, 20.0), fs.hangup, uuid)
        gevent.sleep(random.uniform(0.05, 0.5))


def _answer(fs: FakeFreeSWITCH, uuid: str) -> None:
    if uuid in fs.calls():
        fs.answer(uuid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esl_guard.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--hostname", default="sim")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="seconds (0: off)")
    parser.add_argument("--calls", type=int, default=0, help="keep this many random calls up")
    parser.add_argument("--accounts", default="acct1,acct2,acct3")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    fs = FakeFreeSWITCH(password=args.password, host=args.host, port=args.port,
                        hostname=args.hostname, heartbeat_interval=args.heartbeat or None)
    fs.log_commands = True
    fs.start()
    print(f"fake FreeSWITCH event socket on {args.host}:{fs.port} (password {args.password!r})",
          flush=True)
    if args.calls:
        gevent.spawn(_traffic, fs, args.accounts.split(","), args.calls)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fs.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
