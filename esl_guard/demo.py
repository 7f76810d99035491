"""`esl-guard demo`: the real daemon against the built-in FreeSWITCH simulator.

Accounts place synthetic calls: one well-behaved, and one abuser per clause of the Acceptable
Usage Policy (denial of service: too many calls at once, dialling too fast and locked for it;
network use: a call held too long; mass calling: a burst of short calls; impersonation: a caller
ID it does not own; shared credentials: calls from too many addresses; hosting: too many calls
to a residential line; toll fraud: a burst of premium-rate calls, stopped before the answer).
A local webhook receiver gets the lock, signed.  Everything runs locally (SQLite in a
temporary directory) and ends within about 30 seconds.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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
inbound_contexts = public

[notify]
webhook = http://127.0.0.1:{hook_port}/esl-guard
secret = {secret}
events = lock

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

[account:robo]
max_short_calls = 3/1m

[account:spoof]
caller_id_allowed = +4420794600*

[account:shared]
max_source_ips = 2/1h

[account:host]
max_inbound_concurrent_calls = 1

[destination:premium]
prefixes = 1900 44871
max_concurrent_calls = 1

[destination:emergency]
prefixes = 112 911 999
exempt = true
"""
SECRET = "demo-secret"


class _Receiver:
    """The operator's webhook endpoint: keeps each POST and checks its signature."""

    def __init__(self) -> None:
        self.docs: list[tuple[dict[str, Any], bool]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-ESL-Guard-Signature", ""), want)
                outer.docs.append((json.loads(body), signed))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
        hook = _Receiver()
        conf = Path(tmp) / "esl-guard.conf"
        conf.write_text(CONF.format(port=fs.port, db=Path(tmp) / "demo.db",
                                    journal=Path(tmp) / "journal.jsonl", hook_port=hook.port,
                                    secret=SECRET))
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
        _say("robo: 4 calls answered and dropped at once (max 3 short calls/1m), then one more")
        for _ in range(4):
            u = fs.create_call("robo", dest="4420794600", account_on="create")
            fs.answer(u)
            fs.hangup(u)
        robo = fs.create_call("robo", account_on="create")
        fs.wait_for(lambda: robo not in fs.calls(), timeout=5)
        _say(f"robo: its next call {'refused' if robo not in fs.calls() else 'still up'}")
        _say("spoof: a call with caller ID +12025550100 (allowed: +4420794600*)")
        spoof = fs.create_call("spoof", caller_id="+12025550100", account_on="create")
        fs.wait_for(lambda: spoof not in fs.calls(), timeout=5)
        _say(f"spoof: {'refused before the answer' if spoof not in fs.calls() else 'still up'}")
        _say("shared: calls from 3 addresses (max 2 per hour)")
        shared = [fs.create_call("shared", source_ip=ip, account_on="create")
                  for ip in ("192.0.2.10", "198.51.100.20", "203.0.113.30")]
        fs.wait_for(lambda: shared[2] not in fs.calls(), timeout=5)
        _say(f"shared: {len(live('shared'))} calls up, the third address refused")
        _say("host: 2 calls to a residential line at once (max 1)")
        host = [fs.create_call("host", context="public", account_on="create") for _ in range(2)]
        fs.wait_for(lambda: host[1] not in fs.calls(), timeout=5)
        _say(f"host: {len(live('host'))} call up, the second refused")
        _say("fraud: a burst of 5 premium-rate calls at once, still ringing (premium: 1 call)")
        fraud = [fs.create_call("fraud", dest=f"+1900555010{i}", account_on="create")
                 for i in range(5)]
        fs.wait_for(lambda: sum(u in fs.calls() for u in fraud) == 1, timeout=5)
        _say(f"fraud: {sum(u not in fs.calls() for u in fraud)} refused before the answer; the "
             "dialplan now refuses its next premium call before routing: "
             f"{fs.hash.get('admit_esl_guard', {}).get('fraud:premium', 'no gate')}")
        sos = fs.create_call("dialer", dest="112", account_on="create")
        fs.answer(sos)
        gevent.sleep(0.3)
        _say(f"dialer (locked): its call to 112 is {'up' if sos in fs.calls() else 'ENDED'}: "
             "emergency calls are never touched")
        _say("chatty: one call held past its 3s duration limit")
        chatty = fs.create_call("chatty", account_on="answer")
        fs.answer(chatty)
        fs.wait_for(lambda: chatty not in fs.calls(), timeout=min(8, max(1, deadline - time.monotonic())))
        _say(f"chatty: call {'ended by esl-guard' if chatty not in fs.calls() else 'still up'}")
        for u in good + busy + shared + host + fraud + [sos]:
            if u in fs.calls():
                fs.hangup(u)
        fs.wait_for(lambda: bool(hook.docs), timeout=5)
        daemon.writer.flush(5)
        daemon.request_stop()
        runner.join(timeout=15)
        fs.stop()
        hook.close()
        store = Store(config.database.url)
        rows = store.audit()
        store.close()
    _say("what esl-guard enforced and why (its audit trail, as `esl-guard audit` shows it):")
    for line in audit_table(rows, short_uuid=True):
        print(f"  {line}")
    for doc, signed in hook.docs:
        _say(f"webhook received: {doc['kind']} of {doc['account']} ({doc['clause']}), "
             f"signature {'valid' if signed else 'INVALID'}")
    clauses = {r.get("clause") for r in rows if r["kind"] in ("violation", "lock")}
    _say("clauses enforced: " + ", ".join(sorted(c for c in clauses if c)))
    kinds = {(r["account"], r["kind"]) for r in rows}
    ok = (("busy", "hangup") in kinds and ("dialer", "lock") in kinds and
          ("chatty", "hangup") in kinds and not any(r["account"] == "good" for r in rows)
          and sum(1 for r in rows if r["account"] == "fraud" and r["kind"] == "hangup"
                  and r.get("destination_class") == "premium") == 4
          and any(r["kind"] == "exempt" and r["account"] == "dialer" for r in rows)
          and {"denial_of_service", "network_use", "mass_calling", "impersonation",
               "shared_credentials", "hosting"} <= clauses
          and any(d["kind"] == "lock" and d["account"] == "dialer" and ok for d, ok in hook.docs))
    _say("the well-behaved account was never touched" if ok else "UNEXPECTED outcome, see above")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
