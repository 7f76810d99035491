"""esl-guard as the operator runs it: `python -m esl_guard run -c CONF` in a subprocess, and the
`lock`, `unlock` and `audit --json` commands against the same conf file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.integration.target import Target

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("ESL_GUARD_DEBUG", None)
    return env


class GuardProcess:
    """One esl-guard daemon with its own conf, SQLite database and log under `workdir`."""

    def __init__(self, workdir: Path, target: Target,
                 accounts: Mapping[str, Mapping[str, str]], policy: str = "",
                 resync_interval: str = "10s", database: str | None = None,
                 extra: str = "") -> None:
        """``database``: a database URL (default: an SQLite file of its own; two daemons
        cannot share one SQLite database, issue 14; a PostgreSQL URL makes them a group).
        ``extra``: more conf sections (e.g. ``[cluster]``)."""
        self.workdir = workdir
        self.target = target
        self.conf = workdir / "esl-guard.conf"
        self.log = workdir / "esl-guard.log"
        self.proc: subprocess.Popen[bytes] | None = None
        sections = "".join(
            f"\n[account:{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
            for name, keys in accounts.items())
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "[freeswitch]\n"
            f"host = {target.esl_host}\nport = {target.esl_port}\npassword = {target.esl_password}\n"
            "connect_timeout = 3s\ncommand_timeout = 5s\n"
            f"resync_interval = {resync_interval}\n"
            "\n[database]\n"
            f"url = {database or 'sqlite:///' + str(workdir / 'esl-guard.db')}\n"
            f"journal = {workdir / 'journal.jsonl'}\n"
            "poll_interval = 0.3s\n"
            "\n[policy]\nhangup_cause = CALL_REJECTED\ndry_run = false\n" + policy
            + sections + extra + "\n[logging]\nformat = text\nlevel = debug\n")
        self.conf.chmod(0o600)

    # ------------------------------------------------------------------ the daemon
    def start(self, timeout: float = 30.0) -> GuardProcess:
        check = self.cli("check-config", check=False)
        assert check.returncode == 0, f"esl-guard check-config failed:\n{check.stderr}"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "esl_guard", "run", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                env=_env())
        self.wait_connected(timeout)
        return self

    def connected(self) -> bool:
        """The daemon connected and finished its initial resync (its log says so), or its
        status snapshot shows the node connected."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"esl-guard exited with {self.proc.returncode}\n{self.tail()}")
        if "initial resync" in self.log.read_text(errors="replace"):
            return True
        status = self.cli("status", "--json", check=False)
        if status.returncode != 0:
            return False
        snap = (json.loads(status.stdout or "{}").get("snapshot") or {})
        return any(node.get("connected") for node in snap.get("nodes", []))

    def wait_connected(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.connected():
            if time.monotonic() > deadline:
                raise AssertionError(f"esl-guard did not connect to {self.target.esl_host}:"
                                     f"{self.target.esl_port} within {timeout:g}s\n{self.tail()}")
            time.sleep(0.2)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no esl-guard log)"
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "esl-guard log (tail):\n" + "\n".join("    " + line for line in text)

    # ------------------------------------------------------------------ the CLI
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "esl_guard", args[0], *args[1:], "-c", str(self.conf)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_env(),
                              timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[3:])} exited {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done

    def lock(self, account: str, duration: str = "10m", reason: str = "integration test") -> str:
        return self.cli("lock", account, "--for", duration, "--reason", reason).stdout

    def unlock(self, account: str) -> None:
        self.cli("unlock", account, check=False)

    def audit(self, account: str | None = None) -> list[dict[str, Any]]:
        args = ["audit", "--json"] + (["--account", account] if account else [])
        out = self.cli(*args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_audit(self, account: str, done: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 15.0) -> list[dict[str, Any]]:
        """The audit rows of `account` once `done(rows)` holds (rows are written
        asynchronously); AssertionError with the rows and the daemon log if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.audit(account)
            if done(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"audit rows of {account} never matched: "
                                     f"{json.dumps(rows, indent=1)}\n{self.tail()}")
            time.sleep(0.3)


def kinds(rows: list[dict[str, Any]], kind: str, rule: str | None = None) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == kind and (rule is None or r.get("rule") == rule)]
