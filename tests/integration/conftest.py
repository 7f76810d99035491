"""Fixtures of the integration tests (see README.md in this directory).

A module that needs FreeSWITCH calls module_skip_reason() at import and skips itself: one
SKIPPED line without ESL_GUARD_FS (SKIP_REASON), another without sipp; its tests take the
`fs_target` fixture.  Collection never needs Docker, sipp or the network.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import eslsock
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


def module_skip_reason() -> str | None:
    """Why a module needing FreeSWITCH cannot run here (checked at import, so the whole module
    is reported as ONE skipped line); None when ESL_GUARD_FS is set and sipp is installed.  A
    malformed ESL_GUARD_* value is not a reason to skip: fs_target fails on it."""
    if not os.environ.get("ESL_GUARD_FS", "").strip():
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
def fs_target() -> Target:
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
    problem = None
    try:
        eslsock.wait_ready(target, READY_TIMEOUT)
    except TimeoutError as exc:
        problem = f"{exc}; configured: {target} (is it configured from tests/integration/freeswitch/?)"
    if problem:
        pytest.fail(problem, pytrace=False)
    return target


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
