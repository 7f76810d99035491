"""Journal: durable JSON-lines spill file that survives torn writes and a full disk."""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from esl_guard.store import Journal


def ops(start: int, count: int) -> list[dict[str, Any]]:
    return [{"op": "audit", "event_id": f"e{i}", "time": 1.0 + i} for i in range(start, start + count)]


def test_append_read_clear(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "spool" / "journal.jsonl")  # parent created on demand
    assert journal.read() == [] and journal.size() == 0
    journal.append(ops(0, 3))
    journal.append(ops(3, 2))
    journal.append([])
    assert journal.read() == ops(0, 5)
    assert journal.size() == journal.path.stat().st_size > 0
    journal.clear()
    assert journal.read() == [] and journal.size() == 0
    journal.append(ops(7, 1))
    assert journal.read() == ops(7, 1)


def test_read_from_pages_through_the_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(ops(0, 5))
    first, offset = journal.read_from(0, 2)
    rest, end = journal.read_from(offset)
    assert first + rest == ops(0, 5)
    assert end == journal.size()
    assert journal.read_from(end) == ([], end)


def test_torn_last_line_is_ignored_and_next_append_is_readable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(ops(0, 2))
    with open(journal.path, "ab") as f:  # a crash in the middle of a write
        f.write(b'{"op":"audit","event_id":"torn","ti')
    assert journal.read() == ops(0, 2)
    _, offset = journal.read_from(0)
    assert offset < journal.size()  # never consumes past the torn line

    journal.append(ops(2, 1))
    with caplog.at_level(logging.WARNING, logger="esl_guard.store.journal"):
        assert journal.read() == ops(0, 3)
    assert "corrupt" in caplog.text


def test_disk_full_raises_and_leaves_the_file_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(ops(0, 2))
    size = journal.size()
    real_write = os.write

    def write_half_then_enospc(fd: int, data: Any) -> int:
        if len(data) > 8:  # a short write first, as a filling disk does
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write_half_then_enospc)
    with pytest.raises(OSError) as info:
        journal.append(ops(2, 3))
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()

    assert journal.size() == size  # the partial append was rolled back
    assert journal.read() == ops(0, 2)
    journal.append(ops(5, 1))
    assert journal.read() == ops(0, 2) + ops(5, 1)


def test_fsync_failure_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path / "j")

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        journal.append(ops(0, 1))
    monkeypatch.undo()
    assert journal.read() == []


def test_corrupt_middle_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.path.write_bytes(b'{"op":"a"}\nnot json\n[1,2]\n\n{"op":"b"}\n')
    assert journal.read() == [{"op": "a"}, {"op": "b"}]


def test_values_that_are_not_json_are_stringified(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append([{"op": "audit", "path": tmp_path}])
    assert journal.read() == [{"op": "audit", "path": str(tmp_path)}]
