"""The sipp scenarios against sipp stand-ins for FreeSWITCH on 127.0.0.1 (sipp/selftest/):
every ending a FreeSWITCH test can produce is recognised and reported the same way, and the
digest answer is right.  Needs sipp only (no FreeSWITCH); a few seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SIPP_REASON, fs_required
from tests.integration.sipprun import Sipp, SippResult, sipp_binary

pytestmark = pytest.mark.integration

if sipp_binary() is None and not fs_required():  # required: sipp_available fails instead
    pytest.skip(SIPP_REASON, allow_module_level=True)

LOCAL = "127.0.0.1"


def loop(tmp_path: Path, uas: str, uac: str, calls: int, uas_keys: dict[str, str] | None = None,
         **uac_kw: Any) -> SippResult:
    server = Sipp.uas("uas", f"selftest/{uas}", local_ip=LOCAL, workdir=tmp_path, calls=calls,
                      keys=uas_keys).start()
    try:
        server.wait_listening()
        return Sipp.uac("uac", uac, remote=(LOCAL, server.port), local_ip=LOCAL,
                        workdir=tmp_path, calls=calls, rate=20, **uac_kw).run()
    finally:
        server.stop()


def test_hold_then_caller_bye(sipp_available: str, tmp_path: Path) -> None:
    res = loop(tmp_path, "uas_answer.xml", "uac_hold.xml", 2, account="acme", hold_ms=300)
    assert res.returncode == 0 and res.counts() == {"caller_bye": 2}, res.describe()
    assert res.stats.get("SuccessfulCall(C)") == "2", res.describe()


def test_hold_ended_by_remote_bye(sipp_available: str, tmp_path: Path) -> None:
    res = loop(tmp_path, "uas_answer_bye.xml", "uac_hold.xml", 2, account="acme",
               hold_ms=3000)
    assert res.returncode == 0 and res.counts() == {"remote_bye": 2}, res.describe()
    assert all(o.q850 == 21 for o in res.outcomes), res.describe()
    assert res.elapsed < 3.0, res.describe()  # the BYE cut the 3 s hold short


def test_hold_rejected_before_answer(sipp_available: str, tmp_path: Path) -> None:
    res = loop(tmp_path, "uas_reject.xml", "uac_hold.xml", 2, account="acme", hold_ms=2000)
    assert res.returncode == 0, res.describe()
    assert [(o.outcome, o.code) for o in res.outcomes] == [("rejected", "403")] * 2, \
        res.describe()


def test_locked_refused(sipp_available: str, tmp_path: Path) -> None:
    res = loop(tmp_path, "uas_reject.xml", "uac_locked.xml", 1, account="acme", hold_ms=2000)
    assert res.returncode == 0 and [(o.outcome, o.code) for o in res.outcomes] == \
        [("rejected", "403")], res.describe()


def test_locked_but_answered_fails(sipp_available: str, tmp_path: Path) -> None:
    res = loop(tmp_path, "uas_answer.xml", "uac_locked.xml", 1, account="acme", hold_ms=2000)
    assert res.returncode == 1 and res.counts() == {"answered": 1}, res.describe()


@pytest.mark.parametrize(("password", "expected"), [("s3cret", "caller_bye"),
                                                    ("wrong", "rejected")])
def test_digest_401_credentials(sipp_available: str, tmp_path: Path, password: str,
                                expected: str) -> None:
    res = loop(tmp_path, "uas_digest.xml", "uac_digest_hold.xml", 1,
               uas_keys={"user": "1001", "password": "s3cret"}, account="1001",
               auth=("1001", password), hold_ms=300)
    assert res.returncode == 0 and res.counts() == {expected: 1}, res.describe()


def test_digest_407_like_freeswitch(sipp_available: str, tmp_path: Path) -> None:
    res = loop(tmp_path, "uas_digest407.xml", "uac_digest_hold.xml", 2, account="1001",
               auth=("1001", "s3cret"), hold_ms=300)
    assert res.returncode == 0 and res.counts() == {"caller_bye": 2}, res.describe()
