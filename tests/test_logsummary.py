"""Repeated refusals summarised in the log (issue 16, bug 5): the pure summariser with an
explicit clock, and the daemon over TCP (one full line, then one count per account per period;
every refusal still in the audit trail)."""
from __future__ import annotations

import json
import logging
import re

import pytest

import esl_guard.service as service_mod
from esl_guard.logsummary import RefusalSummary, Summary
from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness, cli, wait_for


def test_the_first_refusal_is_logged_the_rest_of_the_minute_is_one_count() -> None:
    s = RefusalSummary(60.0)
    assert s.refused("acme", 100.0) is True
    assert [s.refused("acme", 100.0 + i) for i in range(1, 175)] == [False] * 174
    assert s.refused("bob", 130.0) is True  # accounts are apart
    assert s.due(159.9) == []
    assert s.due(160.0) == [Summary("acme", 174, 100.0, 60.0)]
    assert s.due(160.0) == []  # reported once


def test_refusals_going_on_give_one_line_per_account_per_period() -> None:
    s = RefusalSummary(60.0)
    assert s.refused("acme", 0.0)
    lines = 0
    for t in range(1, 600):  # ten minutes, a refusal a second
        assert not s.refused("acme", float(t))
        lines += len(s.due(float(t)))
    assert lines == 9  # one line each minute after the first full one


def test_a_quiet_period_is_forgotten_and_the_next_refusal_is_logged_in_full() -> None:
    s = RefusalSummary(60.0)
    assert s.refused("acme", 0.0)
    assert s.due(60.0) == []  # nothing counted: no summary line
    assert len(s) == 0
    assert s.refused("acme", 61.0) is True


def test_a_stop_logs_the_counts_not_logged_yet() -> None:
    s = RefusalSummary(60.0)
    s.refused("acme", 0.0)
    s.refused("acme", 5.0)
    s.refused("bob", 6.0)  # logged in full, nothing counted
    assert s.flush(10.0) == [Summary("acme", 1, 0.0, 10.0)]
    assert len(s) == 0


def test_a_count_whose_period_ended_before_the_tick_is_still_reported() -> None:
    s = RefusalSummary(60.0)
    s.refused("acme", 0.0)
    s.refused("acme", 10.0)
    assert s.refused("acme", 70.0) is False  # the summary is due and counts this one too
    assert s.due(70.0) == [Summary("acme", 2, 0.0, 70.0)]


def test_the_daemon_logs_a_locked_accounts_refusals_once_then_counts_them(
        h: Harness, fs: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "REFUSAL_LOG_PERIOD", 1.0)
    caplog.set_level(logging.INFO, logger="esl_guard.enforce")
    h.start("max_concurrent_calls = 10")
    assert cli(["lock", "acme", "-c", str(h.conf), "--reason", "fraud"]) == 0
    assert wait_for(lambda: "acme" in fs.hash.get("esl_guard", {}))
    calls = [fs.create_call("acme", account_on="create") for _ in range(6)]
    assert wait_for(lambda: all(h.killed(u) for u in calls))

    def summaries() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused:")]

    assert wait_for(lambda: summaries(), timeout=10)
    full = [r for r in caplog.records
            if r.getMessage().startswith("hangup: account=acme rule=locked")]
    assert len(full) == 1 and full[0].levelno == logging.WARNING
    [line] = summaries()
    assert re.fullmatch(r"refused: account=acme rule=locked count=5 seconds=\d+ detail='5 more "
                        r"calls of the locked account refused, each in the audit trail'", line)
    assert h.daemon is not None and h.daemon.writer.flush(5)
    capsys.readouterr()
    assert cli(["audit", "-c", str(h.conf), "--json", "--kind", "hangup"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["uuid"] for r in rows if r["rule"] == "locked") == sorted(calls)
