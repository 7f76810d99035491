"""esl-guard against a real FreeSWITCH whose `show channels` is slow (issue 11, item 14).

FreeSWITCH answers `show channels` from its core database (SQLite by default); while another
process holds that database locked, the query waits ("SQLite is BUSY", retried for ~30 s, then
FreeSWITCH answers `{"row_count": 0}`).  An `api` command runs inline on its ESL connection, so
on that connection every later command and event waits too.  This test locks the database
(the suite's own FreeSWITCH's core.db with ESL_GUARD_FS_BIN; ESL_GUARD_FS_CORE_DB names the
core.db of another FreeSWITCH on this machine), waits until esl-guard's periodic
reconciliation is in flight, and places 2 calls of an account limited to 1: the second is ended
while the reconciliation still waits for its answer, which it cannot get before the lock is
released.  Then the lock is released and the reconciliation succeeds.
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.fsproc import LocalFreeSwitch
from tests.integration.guard import GuardProcess, kinds
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)
ASKING = "asking for the channel list"


@pytest.fixture
def guard(fs_target: Target, run_id: str, tmp_path: Path) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path / "guard", fs_target, {f"slow-{run_id}": {"max_concurrent_calls": "1"}})
    g.start()
    yield g
    g.stop()


@pytest.fixture
def core_db(local_freeswitch: LocalFreeSwitch | None) -> Path:
    """FreeSWITCH's core.db: the suite's own FreeSWITCH (ESL_GUARD_FS_BIN) has it in its state
    directory; for another one on this machine, ESL_GUARD_FS_CORE_DB names it."""
    named = os.environ.get("ESL_GUARD_FS_CORE_DB", "").strip()
    if named:
        return Path(named)
    if local_freeswitch is not None:
        return local_freeswitch.state / "db" / "core.db"
    pytest.skip("set ESL_GUARD_FS_CORE_DB to the path of FreeSWITCH's core.db (a FreeSWITCH "
                "on this machine) to run the slow `show channels` test")


@pytest.fixture
def locked_core_db(core_db: Path) -> Iterator[sqlite3.Connection]:
    assert core_db.is_file(), f"no FreeSWITCH core database at {core_db}"
    db = sqlite3.connect(str(core_db), timeout=10, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    yield db
    if db.in_transaction:
        db.execute("COMMIT")
    db.close()


def log_lines(guard: GuardProcess, start: int = 0) -> list[str]:
    return guard.log.read_text(errors="replace").splitlines()[start:]


def test_a_hangup_is_not_delayed_by_a_reconciliation_in_flight(
        guard: GuardProcess, run_id: str, place_calls: PlaceCalls,
        locked_core_db: sqlite3.Connection) -> None:
    import time

    account = f"slow-{run_id}"
    mark = len(log_lines(guard))
    deadline = time.monotonic() + 30  # resync_interval is 10 s
    while not any(ASKING in line for line in log_lines(guard, mark)):
        assert time.monotonic() < deadline, guard.tail()
        time.sleep(0.2)
    mark += next(i for i, line in enumerate(log_lines(guard, mark)) if ASKING in line)
    t_asked = time.monotonic()
    res = place_calls("slow-resync", account, calls=2, rate=10, limit=2, hold_ms=3000).run()
    assert res.returncode == 0 and len(res.outcomes) == 2, res.describe()
    ended = res.ended_by_freeswitch()
    assert len(ended) == 1 and res.counts()["caller_bye"] == 1, res.describe()
    rows = guard.wait_audit(account, lambda r: len(kinds(r, "hangup")) >= 1)
    assert len(kinds(rows, "hangup", "max_concurrent_calls")) == 1, rows
    # The database is still locked: the reconciliation cannot have its answer yet.
    after = log_lines(guard, mark)
    assert not any("resync:" in line or "reconciliation failed" in line for line in after), \
        "\n".join(after)
    assert time.monotonic() - t_asked < 25, "FreeSWITCH may have given up on its query"
    t_killed = time.monotonic()
    locked_core_db.execute("COMMIT")
    deadline = time.monotonic() + 40
    while not any("periodic resync:" in line for line in log_lines(guard, mark)):
        assert time.monotonic() < deadline, guard.tail()
        time.sleep(0.2)
    print(f"reconciliation asked at 0 s; calls placed, one ended by esl-guard, the other held "
          f"3 s: {t_killed - t_asked:.1f} s; database released; reconciliation done at "
          f"{time.monotonic() - t_asked:.1f} s")
    print("\n".join(line for line in log_lines(guard, mark)
                    if "hangup:" in line or "resync:" in line or ASKING in line))
