"""Run sipp with the scenarios of sipp/ and read back what every call saw.

Each scenario writes one line per call to its <log> file (-trace_logs -log_file):

    ESLGUARD-OUTCOME call=3 outcome=remote_bye code=BYE callid=3-4242@127.0.0.1 Reason: ...

outcome is caller_bye (answered, held, the caller hung up), remote_bye (answered, then
FreeSWITCH sent BYE), rejected (a final 4xx-6xx before answer; code is the status) or answered
(uac_locked.xml: the call was not refused; uas_ring.xml: answered, then FreeSWITCH's BYE), or
cancelled (uas_ring.xml: FreeSWITCH cancelled the call while it rang).  Every run also keeps
sipp's own traces next to it: -trace_msg (every SIP message), -trace_err, -trace_stat (CSV) and -trace_screen.
"""
from __future__ import annotations

import collections
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "sipp"
OUTCOME_RE = re.compile(
    r"ESLGUARD-OUTCOME call=(\d+) outcome=(\w+) code=(\S*) callid=(\S+) ?(.*)$")
# sipp's local RTP ports: below FreeSWITCH's RTP range (freeswitch/vars.xml: 16384-16483), as the
# captures learned the hard way (FIXTURES-README.md, plain_load).
MEDIA_PORTS = (10000, 16000)


def sipp_binary() -> str | None:
    return shutil.which(os.environ.get("SIPP", "sipp"))


def _udp_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def free_udp_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def free_media_port(ip: str) -> int:
    """An even port p in MEDIA_PORTS with p..p+3 free (sipp may use p+2 for video)."""
    lo, hi = MEDIA_PORTS
    for _ in range(200):
        p = random.randrange(lo, hi - 4, 4)
        if all(_udp_free(ip, p + i) for i in range(4)):
            return p
    raise RuntimeError(f"no free UDP port block in {lo}-{hi} on {ip}")


@dataclass(frozen=True)
class Outcome:
    call: int
    outcome: str
    code: str
    callid: str
    reason: str

    @property
    def q850(self) -> int | None:
        """The Q.850 cause of a Reason header (FreeSWITCH adds one when it ends a call)."""
        m = re.search(r"Q\.850;\s*cause=(\d+)", self.reason)
        return int(m.group(1)) if m else None


@dataclass
class SippResult:
    name: str
    command: list[str]
    returncode: int
    elapsed: float
    outcomes: list[Outcome]
    stats: dict[str, str]
    workdir: Path
    note: str = ""

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(o.outcome for o in self.outcomes)

    def by(self, outcome: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    def ended_by_freeswitch(self) -> list[Outcome]:
        """Calls FreeSWITCH ended before the caller: BYE after answer or a final error."""
        return [o for o in self.outcomes if o.outcome in ("remote_bye", "rejected")]

    def _tail(self, suffix: str, lines: int = 15) -> str:
        path = self.workdir / f"{self.name}{suffix}"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").strip().splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def describe(self) -> str:
        outs = ", ".join(f"{k} x{v}" for k, v in sorted(self.counts().items())) or "none"
        codes = sorted({f"{o.outcome}:{o.code}" for o in self.outcomes})
        stats = {k: self.stats.get(k, "?") for k in ("TotalCallCreated", "SuccessfulCall(C)",
                                                      "FailedCall(C)")}
        lines = [f"sipp {self.name}: exit {self.returncode} after {self.elapsed:.1f}s"
                 f"{' (' + self.note + ')' if self.note else ''}",
                 f"  outcomes: {outs} {codes}",
                 f"  stats: {stats}",
                 f"  command: {shlex.join(self.command)}",
                 f"  traces in {self.workdir}"]
        for label, suffix in (("errors", "_errors.log"), ("screen", "_screen.log")):
            tail = self._tail(suffix)
            if tail:
                lines += [f"  {label} (tail):", tail]
        return "\n".join(lines)


@dataclass
class Sipp:
    """One sipp process.  Build with uac() or uas(), then start() and wait()."""

    name: str
    args: list[str]
    workdir: Path
    timeout: float
    ip: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    command: list[str] = field(default_factory=list)

    @classmethod
    def _common(cls, name: str, scenario: str, workdir: Path, ip: str, port: int | None,
                keys: dict[str, str] | None) -> tuple[list[str], int]:
        binary = sipp_binary()
        if binary is None:
            raise RuntimeError("sipp is not on PATH")
        path = Path(scenario) if Path(scenario).is_absolute() else SCENARIOS / scenario
        port = port or free_udp_port(ip)
        wd = workdir
        args = [binary, "-sf", str(path), "-i", ip, "-p", str(port),
                "-mp", str(free_media_port(ip)), "-nostdin",
                "-trace_logs", "-log_file", str(wd / f"{name}_outcomes.log"),
                "-trace_msg", "-message_file", str(wd / f"{name}_messages.log"),
                "-trace_err", "-error_file", str(wd / f"{name}_errors.log"),
                "-trace_stat", "-stf", str(wd / f"{name}_stats.csv"), "-fd", "1",
                "-trace_screen", "-screen_file", str(wd / f"{name}_screen.log")]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        return args, port

    @classmethod
    def uac(cls, name: str, scenario: str, *, remote: tuple[str, int], local_ip: str,
            workdir: Path, account: str, dest: str = "9001", calls: int = 1,
            rate: float = 10.0, limit: int | None = None, hold_ms: int = 3000,
            auth: tuple[str, str] | None = None) -> Sipp:
        """Place `calls` calls of `account` to `dest` at `rate` calls/s, at most `limit` at once;
        each waits up to hold_ms for its answer and holds hold_ms (-recv_timeout)."""
        args, port = cls._common(name, scenario, workdir, local_ip, None, {"account": account})
        args += ["-s", dest, "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000",
                 "-l", str(limit or calls), "-recv_timeout", str(hold_ms)]
        if auth:
            args += ["-au", auth[0], "-ap", auth[1]]
        # All calls start within calls/rate s; each waits at most hold_ms for its answer and
        # holds hold_ms, in ceil(calls/limit) waves; anything beyond that (+15 s) is a hang.
        waves = -(-calls // (limit or calls))
        budget = calls / rate + waves * 2 * hold_ms / 1000 + 15
        args += ["-timeout", f"{int(budget)}s", "-timeout_error", f"{remote[0]}:{remote[1]}"]
        return cls(name, args, workdir, budget + 15, local_ip, port)

    @classmethod
    def uas(cls, name: str, scenario: str, *, local_ip: str, workdir: Path, calls: int,
            keys: dict[str, str] | None = None, timeout: float = 30.0,
            port: int | None = None) -> Sipp:
        """A sipp answering `calls` calls on `port` (default: a free one) of local_ip."""
        args, port = cls._common(name, scenario, workdir, local_ip, port, keys)
        args += ["-m", str(calls), "-timeout", f"{int(timeout)}s"]
        return cls(name, args, workdir, timeout + 5, local_ip, port)

    def start(self) -> Sipp:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.command = list(self.args)
        self.started = time.monotonic()
        with open(self.workdir / f"{self.name}_stdout.log", "wb") as out:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)
        return self

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Until the (UAS) sipp has bound its SIP port."""
        deadline = time.monotonic() + timeout
        while _udp_free(self.ip, self.port):
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sipp {self.name} did not bind {self.ip}:{self.port}\n"
                                   + self.result().describe())
            time.sleep(0.05)

    def wait(self) -> SippResult:
        assert self.proc is not None, "start() first"
        note = ""
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            note = f"killed after {self.timeout:.0f}s"
        return self.result(note)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def result(self, note: str = "") -> SippResult:
        assert self.proc is not None
        rc = self.proc.poll()
        return SippResult(self.name, self.command, -999 if rc is None else rc,
                          time.monotonic() - self.started, read_outcomes(self.workdir /
                                                                         f"{self.name}_outcomes.log"),
                          read_stats(self.workdir / f"{self.name}_stats.csv"), self.workdir, note)

    def run(self) -> SippResult:
        return self.start().wait()


def read_outcomes(path: Path) -> list[Outcome]:
    if not path.exists():
        return []
    outcomes = []
    for line in path.read_text(errors="replace").splitlines():
        m = OUTCOME_RE.search(line)
        if m:
            outcomes.append(Outcome(int(m.group(1)), m.group(2), m.group(3), m.group(4),
                                    m.group(5).strip()))
    return sorted(outcomes, key=lambda o: o.call)


def read_stats(path: Path) -> dict[str, str]:
    """The last row of sipp's -trace_stat CSV (';'-separated, header first)."""
    if not path.exists():
        return {}
    rows = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(rows) < 2:
        return {}
    header = rows[0].rstrip(";").split(";")
    values = rows[-1].rstrip(";").split(";")
    return dict(zip(header, values, strict=False))
