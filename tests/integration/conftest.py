"""Fixtures of the integration tests (see README.md in this directory).

A module that needs FreeSWITCH calls module_skip_reason() at import and skips itself: one
SKIPPED line without ESL_GUARD_FS / ESL_GUARD_FS_BIN (SKIP_REASON), another without sipp; its
tests take the `fs_target` fixture.  Collection never needs Docker, sipp or the network.

With ESL_GUARD_FS_BIN, `fs_target` starts FreeSWITCH for the session (fsproc.py) and stops it
at the end, also when a test fails or on Ctrl-C (pytest tears session fixtures down then).

With ESL_GUARD_REQUIRE_FS=1, or in CI (CI=true), a skipped integration test is a failure.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.integration import eslsock
from tests.integration.fsproc import FreeSwitchError, LocalFreeSwitch
from tests.integration.sipprun import Sipp, sipp_binary
from tests.integration.target import SKIP_REASON, Target, TargetError, target_from_env

SIPP_REASON = "sipp not found on PATH: install it (Debian/Ubuntu: apt-get install sip-tester)"


def _ready_timeout() -> float:
    """A container that was just started needs a while; ESL_GUARD_READY_TIMEOUT=seconds."""
    try:
        return float(os.environ.get("ESL_GUARD_READY_TIMEOUT") or 120)
    except ValueError:
        return 120.0


READY_TIMEOUT = _ready_timeout()


def fs_required() -> bool:
    """A skipped integration test fails the run: ESL_GUARD_REQUIRE_FS=1, or CI=true."""
    return (os.environ.get("ESL_GUARD_REQUIRE_FS", "").strip() == "1"
            or os.environ.get("CI", "").strip().lower() in ("true", "1"))


REQUIRED_NOTE = "skipped, but ESL_GUARD_REQUIRE_FS=1 or CI=true requires the integration suite"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and fs_required() and item.get_closest_marker("integration"):
        report.outcome = "failed"
        report.longrepr = f"{REQUIRED_NOTE}: {_skip_text(report.longrepr)}"


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A whole integration module skipped at import (pytest.skip(allow_module_level=True)) is
    a failure too when the suite is required."""
    if report.skipped and fs_required() and "integration" in report.nodeid:
        report.outcome = "failed"
        report.longrepr = f"{REQUIRED_NOTE}: {_skip_text(report.longrepr)}"


def _skip_text(longrepr: object) -> str:
    """The reason of a skip report ((path, line, 'Skipped: reason') for pytest.skip)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def module_skip_reason() -> str | None:
    """Why a module needing FreeSWITCH cannot run here (checked at import, so the whole module
    is reported as ONE skipped line); None when ESL_GUARD_FS or ESL_GUARD_FS_BIN is set and
    sipp is installed, or when the suite is required (then fs_target's skip is a failure, and
    `-m "not integration"` still deselects the module).  A malformed ESL_GUARD_* value is not a
    reason to skip: fs_target fails on it."""
    if fs_required():
        return None
    if not (os.environ.get("ESL_GUARD_FS", "").strip()
            or os.environ.get("ESL_GUARD_FS_BIN", "").strip()):
        return SKIP_REASON
    if sipp_binary() is None:
        return SIPP_REASON
    return None


@pytest.fixture(scope="session")
def sipp_available() -> str:
    binary = sipp_binary()
    if binary is None:
        pytest.skip(SIPP_REASON)
    return binary


@pytest.fixture(scope="session")
def local_freeswitch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        LocalFreeSwitch | None]:
    """The suite's own FreeSWITCH (ESL_GUARD_FS_BIN), stopped at the end of the session
    whatever happens; None when the suite talks to a FreeSWITCH it did not start."""
    try:
        target = target_from_env()
    except TargetError:
        target = None  # fs_target reports it
    if target is None or target.fs_bin is None:
        yield None
        return
    problem = None
    try:
        local = LocalFreeSwitch(target.fs_bin, tmp_path_factory.mktemp("freeswitch"),
                                target.fs_moddir)
    except FreeSwitchError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def fs_target(local_freeswitch: LocalFreeSwitch | None) -> Target:
    """The FreeSWITCH under test, once it answers on ESL with both SIP profiles running."""
    try:
        target, problem = target_from_env(), None
    except TargetError as exc:
        target, problem = None, f"integration test settings: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)
    if target is None:
        pytest.skip(SKIP_REASON)
    if sipp_binary() is None:
        pytest.skip(SIPP_REASON)
    wait_ready(target, local_freeswitch, READY_TIMEOUT)
    return target


def wait_ready(target: Target, local: LocalFreeSwitch | None, timeout: float) -> None:
    """Until FreeSWITCH is ready; a test failure (with FreeSWITCH's output) if it never is."""
    problem = None
    try:
        if local is None:
            eslsock.wait_ready(target, timeout)
        else:
            def alive_and_ready() -> str | None:
                local.check_alive()
                return eslsock.ready(target)
            eslsock.poll(alive_and_ready, timeout, interval=0.2,
                         what=f"FreeSWITCH {local.binary} ready (ESL auth, sofia profiles "
                         "external + internal RUNNING, mod_hash)")
    except TimeoutError as exc:
        problem = f"{exc}; configured: {target} (is it configured from tests/integration/freeswitch/?)"
    except FreeSwitchError as exc:
        problem = str(exc)
    if problem:
        if local is not None:
            problem += "\n" + local.tail()
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def restart_freeswitch(fs_target: Target, local_freeswitch: LocalFreeSwitch | None
                       ) -> Callable[[], None] | None:
    """Restarts FreeSWITCH as a crash would (its calls end unseen) and returns once it is
    ready again; None when there is no way to (the restart test skips)."""
    if local_freeswitch is not None:
        local = local_freeswitch

        def restart_local() -> None:
            local.restart()
            wait_ready(fs_target, local, READY_TIMEOUT)
        return restart_local
    command = fs_target.restart_command
    if command is None:
        return None

    def restart_command() -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (f"{fs_target.restart_description} exited "
                                      f"{done.returncode}:\n{done.stdout}{done.stderr}")
        wait_ready(fs_target, None, READY_TIMEOUT)
    return restart_command


@pytest.fixture(scope="session")
def run_id() -> str:
    """Makes this run's account names unique, so runs against a long-lived FreeSWITCH never see
    each other's locks or calls."""
    return secrets.token_hex(3)


@pytest.fixture
def sipp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sipp"
    d.mkdir()
    return d


@pytest.fixture
def place_calls(fs_target: Target, sipp_dir: Path) -> Iterator[PlaceCalls]:
    placer = PlaceCalls(fs_target, sipp_dir)
    yield placer
    placer.stop_all()


class PlaceCalls:
    """Builds sipp callers against the target's SIP profiles; stops leftovers at teardown."""

    def __init__(self, target: Target, workdir: Path) -> None:
        self.target = target
        self.workdir = workdir
        self.started: list[Sipp] = []

    def __call__(self, name: str, account: str, *, scenario: str = "uac_hold.xml",
                 digest: bool = False, **kw: object) -> Sipp:
        t = self.target
        if digest:
            kw.setdefault("auth", (account, t.sip_password))
            remote = (t.sip_auth_host, t.sip_auth_port)
        else:
            remote = (t.sip_host, t.sip_port)
        sipp = Sipp.uac(name, scenario, remote=remote, local_ip=t.sipp_ip, workdir=self.workdir,
                        account=account, **kw)  # type: ignore[arg-type]
        self.started.append(sipp)
        return sipp

    def stop_all(self) -> None:
        for sipp in self.started:
            if sipp.proc is not None:
                sipp.stop()
