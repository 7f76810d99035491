"""esl-guard against a real FreeSWITCH whose `show channels` is slow (issue 11, item 14).

FreeSWITCH answers `show channels` from its core database (SQLite by default); while another
process holds that database locked, the query waits ("SQLite is BUSY", retried for ~30 s, then
FreeSWITCH answers `{"row_count": 0}`).  An `api` command runs inline on its ESL connection, so
on that connection every later command and event waits too.  This test locks the database
(ESL_GUARD_FS_CORE_DB = the path of FreeSWITCH's core.db: only where FreeSWITCH runs on this
machine, e.g. ../shared/freeswitch's STATE_DIR/db/core.db), waits until esl-guard's periodic
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

from tests.integration import eslsock
from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.target import Target, target_from_env

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)
CORE_DB = os.environ.get("ESL_GUARD_FS_CORE_DB", "").strip()
if not CORE_DB:
    pytest.skip("set ESL_GUARD_FS_CORE_DB to the path of FreeSWITCH's core.db (a FreeSWITCH "
                "on this machine) to run the slow `show channels` test", allow_module_level=True)

ASKING = "asking for the channel list"


@pytest.fixture(scope="module")
def fs_target() -> Target:
    """As the suite's, but reads the profiles' state from `sofia status` (`sofia status profile
    NAME` never says RUNNING on 1.10.12, see FIELD.md)."""
    target = target_from_env()
    assert target is not None

    def ready() -> bool:
        with eslsock.connect(target, timeout=3.0) as esl:
            profiles = esl.api("sofia status")
            return (esl.api("status").startswith("UP") and "external" in profiles
                    and "internal" in profiles and profiles.count("RUNNING") >= 2)

    eslsock.poll(ready, 60, what="FreeSWITCH ready")
    return target


@pytest.fixture
def guard(fs_target: Target, run_id: str, tmp_path: Path) -> Iterator[GuardProcess]:
    g = GuardProcess(tmp_path / "guard", fs_target, {f"slow-{run_id}": {"max_concurrent_calls": "1"}})
    g.start()
    yield g
    g.stop()


@pytest.fixture
def locked_core_db() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(CORE_DB, timeout=10, isolation_level=None)
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
