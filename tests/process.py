"""The real daemon as a separate process (``python -m esl_guard run``) against the simulator:
for what only the process shows (its log lines on stderr, its control socket, signals)."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import gevent.subprocess

from esl_guard import __version__
from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import wait_for

ROOT = Path(__file__).parent.parent


class DaemonProcess:
    """``esl-guard run -c CONF`` with its stderr in a file; one process per :meth:`start`."""

    @classmethod
    def over_sqlite(cls, directory: Path, fs: FakeFreeSWITCH, policy: str) -> DaemonProcess:
        """The daemon of a conf in ``directory`` (its SQLite database, journal and control
        socket there too) with ``policy`` as its [policy] section."""
        from tests.harness import Harness

        harness = Harness(directory, f"sqlite:///{directory / 'guard.db'}", fs)
        return cls(harness.write(policy), fs, directory)

    def __init__(self, conf: Path, fs: FakeFreeSWITCH, log_dir: Path) -> None:
        self.conf = conf
        self.fs = fs
        self.log_dir = log_dir
        self.runs = 0
        self.proc: gevent.subprocess.Popen | None = None
        self.log_path = log_dir / "run0.log"

    def start(self) -> None:
        """Start it and wait until it runs and has resynced with the simulator."""
        self.runs += 1
        self.log_path = self.log_dir / f"run{self.runs}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("NOTIFY_SOCKET", None)
        lists = self.fs.commands.count("api show channels as json")
        with self.log_path.open("wb") as err:
            self.proc = gevent.subprocess.Popen(
                [sys.executable, "-m", "esl_guard", "run", "-c", str(self.conf)], env=env,
                stderr=err, stdout=gevent.subprocess.DEVNULL)
        assert wait_for(lambda: f"esl-guard {__version__} running" in self.log(), timeout=30), \
            self.log()
        assert wait_for(lambda: self.fs.commands.count("api show channels as json") > lists
                        and "initial resync" in self.log(), timeout=20), self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (None: it was not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return int(proc.wait(timeout=30))
        finally:
            if proc.poll() is None:
                proc.kill()
