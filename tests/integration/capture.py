"""Record a real FreeSWITCH's event socket while sipp places calls, in the format of
tests/fixtures/esl (NAME.bin: every byte received; NAME.sent.tsv: every command sent).

    unshare -n bash -c 'ip link set lo up; ESL_GUARD_FS_BIN=../shared/freeswitch/bin/freeswitch \\
        ESL_GUARD_FS_MODDIR=../shared/freeswitch/mod .venv/bin/python -m tests.integration.capture \\
        plain_loopback OUTDIR'

plain_att_xfer: see att_xfer() below and tests/fixtures/esl/FIXTURES-README.md.

plain_loopback: `event plain ALL`, then one call of account `acct1` to extension 9007 (a bridge
through loopback/ channels to 9001), held 3 s by the caller; 1.5 s after the call started (the
three channels answered) `api show channels as json`; 1 s after sipp's end, `exit`.  A plain
socket, no ESL library.

plain_answer_now (issue 12): two connections at once, `event plain ALL` (plain_answer_now) and
esl-guard's own subscription and event filters (plain_answer_now_filtered: the bytes the daemon
reads), then one call of account `acct1` to extension 9008, a bridge to a sipp UAS on port 5091
that answers at once (200, no 180/183: `uas_answer_now.xml`), held 1 s by the caller; 1 s after
sipp's end, `exit` on both.
"""
from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

from esl_guard.events import SUBSCRIPTION, event_filters
from tests.integration import eslsock
from tests.integration.fsproc import LocalFreeSwitch
from tests.integration.sipprun import Sipp
from tests.integration.target import Target, target_from_env


class Recorder:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=0.2)
        self.received = bytearray()
        self.sent: list[tuple[int, float, str]] = []
        self.t0 = time.monotonic()

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            self.received += chunk

    def send(self, command: str) -> None:
        self.sent.append((len(self.received), time.monotonic() - self.t0, command + "\n\n"))
        self.sock.sendall(command.encode() + b"\n\n")

    def until_eof(self, timeout: float = 5.0) -> None:
        self.pump(timeout)  # returns at EOF
        self.sock.close()

    def save(self, outdir: Path, name: str) -> None:
        (outdir / f"{name}.bin").write_bytes(bytes(self.received))
        with open(outdir / f"{name}.sent.tsv", "w") as tsv:
            for offset, t, command in self.sent:
                tsv.write(f"{offset}\t{t:.3f}\t{json.dumps(command)}\n")


    def wait_for(self, needle: bytes, timeout: float, start: int = 0) -> int:
        """Pump until ``needle`` has arrived (after offset ``start``); its offset, or -1."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.received.find(needle, start)
            if at >= 0:
                return at
            self.pump(0.1)
        return -1


def first_value(data: bytes, name: bytes, start: int) -> str:
    """The value of header ``name`` in the event starting at or after ``start``."""
    at = data.index(b"\n" + name + b": ", start) + len(name) + 3
    return data[at:data.index(b"\n", at)].decode()


def att_xfer(rec: Recorder, target: Target, workdir: Path) -> int:
    """plain_att_xfer: A (acct1) calls 9005, bridged to B1 (a sipp UAS on 5090); the client
    runs att_xfer on A (`uuid_broadcast A att_xfer::sofia/external/9999@IP:5090 aleg`, what a
    PBX's `bind_meta_app ... att_xfer` does), which holds B1 and originates B2 from A (the same
    UAS); A talks to B2 until its caller hangs up, then att_xfer bridges B1 to B2.  After that:
    `show channels as json`, `show calls as json`, and `uuid_kill B1` (what esl-guard sends)."""
    uas = Sipp.uas("uas", "uas_ring.xml", local_ip=target.sipp_ip, workdir=workdir, calls=2,
                   port=5090, timeout=60).start()
    uas.wait_listening()
    caller = Sipp.uac("caller", "uac_hold.xml", remote=(target.sip_host, target.sip_port),
                      local_ip=target.sipp_ip, workdir=workdir, account="acct1",
                      dest="9005", hold_ms=12000).start()
    at = rec.wait_for(b"Event-Name: CHANNEL_BRIDGE", 10)
    if at < 0:
        print("capture: no CHANNEL_BRIDGE", file=sys.stderr)
        return 1
    a_leg = first_value(bytes(rec.received), b"Unique-ID", at)
    rec.pump(1.0)
    rec.send(f"api uuid_broadcast {a_leg} att_xfer::sofia/external/9999@{target.sipp_ip}:5090 aleg")
    while caller.proc is not None and caller.proc.poll() is None:
        rec.pump(0.2)
    res = caller.wait()
    rec.pump(2.0)
    rec.send("api show channels as json")
    rec.pump(0.5)
    rec.send("api show calls as json")
    rec.pump(0.5)
    data = bytes(rec.received)
    b1 = first_value(data, b"Unique-ID",
                     data.rfind(b"Event-Name: ", 0, data.index(b"Call-Direction: outbound")))
    rec.send(f"api uuid_kill {b1} CALL_REJECTED")
    rec.pump(2.0)
    rec.send("exit")
    rec.until_eof()
    uas.stop()
    print(res.describe())
    print(uas.result().describe())
    return 0


def answer_now(target: Target, outdir: Path, tmp: Path) -> int:
    recs = {"plain_answer_now": ["event plain ALL"],
            "plain_answer_now_filtered": [f"event plain {SUBSCRIPTION}",
                                          *(f"filter {f}" for f in event_filters("accountcode"))]}
    open_recs = {}
    for name, commands in recs.items():
        rec = open_recs[name] = Recorder(target.esl_host, target.esl_port)
        rec.pump(0.3)
        rec.send(f"auth {target.esl_password}")
        rec.pump(0.3)
        for command in commands:
            rec.send(command)
            rec.pump(0.2)
    uas = Sipp.uas("uas", "uas_answer_now.xml", local_ip=target.sipp_ip, workdir=tmp, calls=1,
                   port=5091).start()
    uas.wait_listening()
    sipp = Sipp.uac("answer_now", "uac_hold.xml", remote=(target.sip_host, target.sip_port),
                    local_ip=target.sipp_ip, workdir=tmp, account="acct1", dest="9008",
                    hold_ms=1000).start()
    while sipp.proc is not None and sipp.proc.poll() is None:
        for rec in open_recs.values():
            rec.pump(0.05)
    res, far = sipp.wait(), uas.wait()
    for name, rec in open_recs.items():
        rec.pump(1.0)
        rec.send("exit")
        rec.until_eof()
        rec.save(outdir, name)
    print(res.describe())
    print(far.describe())
    return 0 if res.counts() == {"caller_bye": 1} and far.counts() == {"answered": 1} else 1


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("plain_loopback", "plain_att_xfer", "plain_answer_now"):
        print("usage: python -m tests.integration.capture "
              "plain_loopback|plain_att_xfer|plain_answer_now OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[1])
    target = target_from_env()
    if target is None or target.fs_bin is None:
        print("capture: set ESL_GUARD_FS_BIN (and ESL_GUARD_FS_MODDIR)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        fs = LocalFreeSwitch(target.fs_bin, Path(tmp) / "fs", target.fs_moddir)
        fs.start()
        try:
            eslsock.wait_ready(target, 30)
            if argv[0] == "plain_answer_now":
                return answer_now(target, outdir, Path(tmp))
            rec = Recorder(target.esl_host, target.esl_port)
            rec.pump(0.3)
            rec.send(f"auth {target.esl_password}")
            rec.pump(0.3)
            rec.send("event plain ALL")
            rec.pump(0.5)
            if argv[0] == "plain_att_xfer":
                rc = att_xfer(rec, target, Path(tmp))
                rec.save(outdir, argv[0])
                return rc
            sipp = Sipp.uac("loopback", "uac_hold.xml", remote=(target.sip_host, target.sip_port),
                            local_ip=target.sipp_ip, workdir=Path(tmp), account="acct1",
                            dest="9007", hold_ms=3000).start()
            rec.pump(1.5)
            rec.send("api show channels as json")
            while sipp.proc is not None and sipp.proc.poll() is None:
                rec.pump(0.2)
            res = sipp.wait()
            rec.pump(1.0)
            rec.send("exit")
            rec.until_eof()
            rec.save(outdir, "plain_loopback")
            print(res.describe())
            return 0 if res.counts() == {"caller_bye": 1} else 1
        finally:
            fs.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
