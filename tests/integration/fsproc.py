"""A FreeSWITCH the suite starts itself: ESL_GUARD_FS_BIN=/path/to/freeswitch.

The binary runs with the repository's configuration (a copy of tests/integration/freeswitch/ in
a temporary directory) and with every path on its command line pointing into that directory:
a binary's compiled-in paths may name a prefix that does not exist (../shared/freeswitch is
relocatable, a source build looks under /usr/local/freeswitch).  ESL_GUARD_FS_MODDIR gives the
module directory when the modules are not where the binary expects them.

The process gets its own session (a Ctrl-C in the terminal reaches pytest, which stops it
cleanly) and dies with pytest even when pytest is killed (PR_SET_PDEATHSIG).  stop() sends
SIGTERM, waits, then SIGKILL; crash() is SIGKILL at once (the restart test: the calls end
while esl-guard cannot see it).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

CONF_SOURCE = Path(__file__).resolve().parent / "freeswitch"
STATE_DIRS = ("log", "db", "run", "storage", "cache", "tmp", "sounds", "recordings", "certs",
              "scripts", "grammar", "htdocs")
STOP_TIMEOUT = 30.0


class FreeSwitchError(RuntimeError):
    """FreeSWITCH could not be started: one line, then the tail of its output."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalFreeSwitch:
    def __init__(self, binary: str, workdir: Path, moddir: str | None = None) -> None:
        found = shutil.which(binary) if os.sep not in binary else binary
        if not found or not os.access(found, os.X_OK) or not Path(found).is_file():
            raise FreeSwitchError(f"ESL_GUARD_FS_BIN={binary!r}: not an executable file")
        self.binary = str(Path(found).resolve())
        self.moddir = str(Path(moddir).resolve()) if moddir else None
        if self.moddir and not Path(self.moddir).is_dir():
            raise FreeSwitchError(f"ESL_GUARD_FS_MODDIR={moddir!r}: not a directory")
        self.workdir = workdir
        self.conf = workdir / "conf"
        self.state = workdir / "state"
        self.output = self.state / "log" / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        s = self.state
        cmd = [self.binary, "-nonat", "-nc", "-nf", "-np", "-conf", str(self.conf),
               "-log", str(s / "log"), "-db", str(s / "db"), "-run", str(s / "run"),
               "-base", str(s), "-storage", str(s / "storage"), "-cache", str(s / "cache"),
               "-temp", str(s / "tmp"), "-sounds", str(s / "sounds"),
               "-recordings", str(s / "recordings"), "-certs", str(s / "certs"),
               "-scripts", str(s / "scripts"), "-grammar", str(s / "grammar"),
               "-htdocs", str(s / "htdocs")]
        if self.moddir:
            cmd += ["-mod", self.moddir]
        return cmd

    def start(self) -> None:
        """Start FreeSWITCH (readiness is the caller's: eslsock.wait_ready)."""
        if self.running():
            raise FreeSwitchError(f"FreeSWITCH already runs, pid {self.pid}")
        if not self.conf.exists():
            shutil.copytree(CONF_SOURCE, self.conf)
        for name in STATE_DIRS:
            (self.state / name).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # a relocated bundle keeps its libraries in ../lib (RUNPATH finds them; a binary
        # without RUNPATH needs the variable); harmless when the directory does not exist
        lib = Path(self.binary).parent.parent / "lib"
        if lib.is_dir():
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(lib), env.get("LD_LIBRARY_PATH")) if p)
        with open(self.output, "ab") as out:
            out.write(f"--- start {self.starts + 1}: {' '.join(self.command())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.state, env=env,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """FreeSwitchError with its output if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise FreeSwitchError(f"FreeSWITCH exited with status {self.proc.returncode}\n"
                                  + self.tail())

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns once the process is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.crash()

    def crash(self) -> None:
        """SIGKILL: FreeSWITCH ends every call without a word to its event socket clients."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        """Kill it as a crash would, then start it again (mod_hash is empty afterwards)."""
        self.crash()
        self.start()

    def tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.output, self.state / "log" / "freeswitch.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"{path} (tail):\n" + "\n".join("    " + t for t in text))
        return "\n".join(parts) or "(no FreeSWITCH output)"
