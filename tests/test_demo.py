"""`esl-guard demo` shows one abuser per clause and the signed lock webhook (issue 13)."""
from __future__ import annotations

import pytest


def test_demo_shows_every_clause_and_the_signed_lock(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import esl_guard.logsetup
    from esl_guard.demo import run_demo

    monkeypatch.setattr(esl_guard.logsetup, "setup_logging", lambda *a, **k: None)
    assert run_demo(seconds=30) == 0
    out = capsys.readouterr().out
    assert "webhook received: lock of dialer (denial_of_service), signature valid" in out
    assert ("clauses enforced: denial_of_service, hosting, impersonation, mass_calling, "
            "network_use, shared_credentials") in out
