"""`esl-guard demo`: the real daemon against the built-in FreeSWITCH simulator.

Four accounts place synthetic calls: one well-behaved, one over its concurrency limit, one
dialling too fast (and locked for it), one holding a call too long.  Everything runs locally
(SQLite in a temporary directory) and ends within about 30 seconds.
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import gevent

CONF = """\
[freeswitch]
host = 127.0.0.1
port = {port}
password = ClueCon
heartbeat_interval = 20s

[database]
url = sqlite:///{db}
journal = {journal}
poll_interval = 1s

[policy]
max_concurrent_calls = 20
max_call_rate = 60/1m
hangup_cause = CALL_REJECTED

[account:good]
max_concurrent_calls = 2

[account:busy]
max_concurrent_calls = 2

[account:dialer]
max_call_rate = 3/1m
lock_after = 2/1m
lock_duration = 10m

[account:chatty]
max_call_duration = 3s
"""


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def run_demo(seconds: float = 30.0) -> int:
    from esl_guard.config import load_config
    from esl_guard.daemon import Daemon
    from esl_guard.logsetup import setup_logging
    from esl_guard.render import audit_table
    from esl_guard.simulator import FakeFreeSWITCH
    from esl_guard.store import Store

    setup_logging("text", "WARNING")
    logging.getLogger("esl_guard.enforce").setLevel(logging.INFO)
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="esl-guard-demo-") as tmp:
        fs = FakeFreeSWITCH(password="ClueCon").start()
        conf = Path(tmp) / "esl-guard.conf"
        conf.write_text(CONF.format(port=fs.port, db=Path(tmp) / "demo.db",
                                    journal=Path(tmp) / "journal.jsonl"))
        config = load_config(conf)
        daemon = Daemon(str(conf), config)
        runner = gevent.spawn(daemon.run)
        _say(f"simulated FreeSWITCH on 127.0.0.1:{fs.port}; esl-guard connecting")
        if not fs.wait_for(lambda: fs.connections > 0 and daemon.guard.sync[
                config.nodes[0].name].ok, timeout=10):
            _say("the daemon did not connect to the simulator")
            return 1

        def live(account: str) -> list[str]:
            return [u for u, c in fs.calls().items() if c.get("account") == account]

        _say("good: 2 calls at once (limit 2) - must not be touched")
        good = [fs.create_call("good", account_on="answer") for _ in range(2)]
        for u in good:
            fs.answer(u)
        _say("busy: 3 calls at once (limit 2) - the third must be hung up")
        busy = [fs.create_call("busy", account_on="create") for _ in range(3)]
        fs.wait_for(lambda: len(live("busy")) == 2, timeout=5)
        _say(f"busy: {len(live('busy'))} calls still up")
        _say("dialer: 6 calls in a row (limit 3/1m, lock after 2 violations)")
        for _ in range(6):
            u = fs.create_call("dialer", account_on="create")
            fs.answer(u)
            gevent.sleep(0.05)
        fs.wait_for(lambda: "dialer" in fs.hash.get("esl_guard", {}), timeout=5)
        _say(f"dialer: {len(live('dialer'))} calls up; locked in FreeSWITCH's hash: "
             f"{fs.hash.get('esl_guard', {}).get('dialer', 'no')}")
        _say("chatty: one call held past its 3s duration limit")
        chatty = fs.create_call("chatty", account_on="answer")
        fs.answer(chatty)
        fs.wait_for(lambda: chatty not in fs.calls(), timeout=min(8, max(1, deadline - time.monotonic())))
        _say(f"chatty: call {'ended by esl-guard' if chatty not in fs.calls() else 'still up'}")
        for u in good + busy:
            if u in fs.calls():
                fs.hangup(u)
        daemon.writer.flush(5)
        daemon.request_stop()
        runner.join(timeout=15)
        fs.stop()
        store = Store(config.database.url)
        rows = store.audit()
        store.close()
    _say("what esl-guard enforced and why (its audit trail, as `esl-guard audit` shows it):")
    for line in audit_table(rows, short_uuid=True):
        print(f"  {line}")
    kinds = {(r["account"], r["kind"]) for r in rows}
    ok = (("busy", "hangup") in kinds and ("dialer", "lock") in kinds and
          ("chatty", "hangup") in kinds and not any(r["account"] == "good" for r in rows))
    _say("the well-behaved account was never touched" if ok else "UNEXPECTED outcome, see above")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
