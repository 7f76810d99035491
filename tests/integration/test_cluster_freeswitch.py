"""High availability (issue 14) on the real FreeSWITCH with sipp: two `esl-guard run` with the
same conf on a throwaway PostgreSQL database (over its Unix socket: the suite runs in a
network namespace that has only loopback).  Only the active one hangs up; after SIGKILL of the
active, the standby takes over and enforces.

Skipped, like test_freeswitch.py, without ESL_GUARD_FS or sipp.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import PlaceCalls, module_skip_reason
from tests.integration.guard import GuardProcess, kinds
from tests.integration.target import Target

pytestmark = pytest.mark.integration

if (_skip := module_skip_reason()) is not None:
    pytest.skip(_skip, allow_module_level=True)

from tests.integration.test_freeswitch import assert_ended_by_guard  # noqa: E402

PG_SOCKET = os.environ.get("ESL_GUARD_TEST_PG_SOCKET", "/var/run/postgresql")
FAILOVER = "3s"


@pytest.fixture
def pg_socket_url() -> Iterator[str]:
    import psycopg2

    from bench.failover import throwaway_database

    admin = f"postgresql://postgres@/postgres?host={PG_SOCKET}"
    try:
        psycopg2.connect(admin, connect_timeout=3).close()
    except psycopg2.Error as exc:
        pytest.skip(f"no PostgreSQL on the Unix socket in {PG_SOCKET}: {exc}")
    with throwaway_database(admin, "esl_guard_it") as url:
        yield url


def roles(url: str) -> dict[int, str]:
    from esl_guard.store import Store

    store = Store(url)
    try:
        return {int(m["pid"]): str(m["role"]) for m in store.members()}
    finally:
        store.close()


def wait_role(url: str, guard: GuardProcess, role: str, timeout: float = 30.0) -> None:
    assert guard.proc is not None
    deadline = time.monotonic() + timeout
    while roles(url).get(guard.proc.pid) != role:
        assert time.monotonic() < deadline, f"not {role}\n{guard.tail()}"
        time.sleep(0.2)


def one_of_two_ended(place_calls: PlaceCalls, name: str, acct: str) -> None:
    """Two calls of ``acct`` (limit 1) at once: esl-guard ends exactly one."""
    res = place_calls(name, acct, calls=2, rate=10, limit=2, hold_ms=4000).run()
    assert res.returncode == 0 and len(res.ended_by_freeswitch()) == 1, res.describe()
    assert_ended_by_guard(res.ended_by_freeswitch(), res)


def test_two_daemons_one_acts_and_the_standby_takes_over(
        fs_target: Target, run_id: str, tmp_path: Path, place_calls: PlaceCalls,
        pg_socket_url: str) -> None:
    acct = f"ha-{run_id}"
    accounts = {acct: {"max_concurrent_calls": "1"}}
    extra = f"\n[cluster]\nfailover_after = {FAILOVER}\n"
    a = GuardProcess(tmp_path / "a", fs_target, accounts, database=pg_socket_url, extra=extra)
    b = GuardProcess(tmp_path / "b", fs_target, accounts, database=pg_socket_url, extra=extra)
    try:
        a.start()
        wait_role(pg_socket_url, a, "active")
        b.start()
        wait_role(pg_socket_url, b, "standby")

        one_of_two_ended(place_calls, "ha-active", acct)
        rows = a.wait_audit(acct, lambda r: len(kinds(r, "hangup")) >= 1)
        assert len(kinds(rows, "hangup", "max_concurrent_calls")) == 1, rows
        assert len(kinds(rows, "violation", "max_concurrent_calls")) == 1, rows
        a_log, b_log = a.log.read_text(), b.log.read_text()
        assert f"hangup: account={acct}" in a_log, a.tail()
        assert f"hangup: account={acct}" not in b_log, b.tail()
        assert f"standby: hangup of {acct} (max_concurrent_calls" in b_log, b.tail()

        assert a.proc is not None
        a.proc.kill()
        a.proc.wait()
        wait_role(pg_socket_url, b, "active")
        one_of_two_ended(place_calls, "ha-takeover", acct)
        rows = b.wait_audit(acct, lambda r: len(kinds(r, "hangup")) >= 2)
        assert len(kinds(rows, "hangup", "max_concurrent_calls")) == 2, rows
        assert "role: standby -> active" in b.log.read_text(), b.tail()
    finally:
        a.stop()
        b.stop()
