"""A local append-only JSON-lines file of ops the database could not take yet.

Each line is one op.  A write cut short (crash, disk full) leaves at most a torn last line:
readers ignore it, and the next append starts on a fresh line, so later ops stay readable.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Journal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def append(self, ops: list[dict[str, Any]]) -> None:
        """Append ops durably (fsync).  On OSError (e.g. ENOSPC) nothing is appended."""
        if not ops:
            return
        data = b"".join(_encode(op) for op in ops)
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _O_CLOEXEC, 0o600)
        try:
            start = os.fstat(fd).st_size
            if start > 0 and os.pread(fd, 1, start - 1) != b"\n":
                data = b"\n" + data  # isolate a torn line left by an earlier crash
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                _truncate_quietly(fd, start)
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)

    def read(self) -> list[dict[str, Any]]:
        """All complete ops in order (a torn last line and corrupt lines are skipped)."""
        ops, _ = self.read_from(0)
        return ops

    def read_from(
        self, offset: int = 0, max_ops: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Up to `max_ops` ops starting at byte `offset`, and the offset after them.

        The returned offset never goes past a torn last line, so it is safe to continue from
        it after more appends.
        """
        ops: list[dict[str, Any]] = []
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return ops, offset
        with f:
            f.seek(offset)
            pos = offset
            while max_ops is None or len(ops) < max_ops:
                line = f.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    log.warning("%s: ignoring a torn last line (%d bytes) at byte %d",
                                self.path, len(line), pos)
                    break
                line_at, pos = pos, pos + len(line)
                if not line.strip():
                    continue
                try:
                    op = json.loads(line)
                except ValueError:
                    op = None
                if not isinstance(op, dict):
                    log.warning("%s: skipping a corrupt line at byte %d", self.path, line_at)
                    continue
                ops.append(op)
        return ops, pos

    def clear(self) -> None:
        """Empty the journal (after its ops were committed to the database)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


def _encode(op: dict[str, Any]) -> bytes:
    return (json.dumps(op, separators=(",", ":"), default=str) + "\n").encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)  # drop a partial append; shrinking needs no free space
    except OSError:
        log.debug("could not roll back a partial journal append", exc_info=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
