"""SQLite: one `esl-guard run` per database (a group needs PostgreSQL).

A POSIX lock on a file beside the database (``<db>.lock``), held as long as the process
lives (the kernel drops it when the process dies, even on SIGKILL); the file names the
holder (pid, host, start time) for the message a second process gives when it refuses to
start.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO


class AlreadyRunning(Exception):
    """Another process holds the database; str() is the operator's message."""


def lock_path(db_file: str) -> Path:
    return Path(db_file + ".lock")


class SingleInstance:
    def __init__(self, db_file: str) -> None:
        self.db = db_file
        self.path = lock_path(db_file)
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Hold the lock, or raise AlreadyRunning naming the other process."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process life
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = " ".join(f.read().split()) or "unknown"
            f.close()
            raise AlreadyRunning(
                f"another esl-guard run already uses the database {self.path.with_suffix('')}"
                f" ({holder}): stop it first; several instances (high availability) need a "
                "PostgreSQL [database] url") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.seek(0)
                f.truncate()
            finally:
                f.close()  # drops the lock
