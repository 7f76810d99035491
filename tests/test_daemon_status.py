"""The daemon's status record (issue 16): a clean stop is recorded, a failing status write is
logged and counted, the version is reported."""
from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import generate_latest

import esl_guard.daemon as daemon_mod
from esl_guard import __version__
from esl_guard.status import daemon_state, render_status
from esl_guard.store import Store, StoreError
from tests.harness import Harness, wait_for


@pytest.fixture(autouse=True)
def fast_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_mod, "STATUS_EVERY", 0.1)


def test_a_clean_stop_is_shown_as_stopped_at_once(h: Harness,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="esl_guard.daemon"):
        daemon = h.start("max_concurrent_calls = 2")
    store = Store(h.db_url)
    assert wait_for(lambda: store.get_status() is not None, timeout=10)
    row = store.get_status()
    assert row is not None and row[1]["version"] == __version__
    assert daemon_state(row, row[0] + 1) == "running"
    assert any(r.getMessage().startswith(f"esl-guard {__version__} running")
               for r in caplog.records)
    assert h.stop() == 0
    row = store.get_status()
    assert row is not None and row[1]["stopped"] is not None
    text = render_status(store, daemon.config, as_json=False, now=row[0] + 1, utc=True)
    assert text.startswith("daemon: stopped at "), text
    store.close()


def test_a_failing_status_write_is_logged_and_counted(h: Harness,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    daemon = h.start("max_concurrent_calls = 2")
    real_apply = daemon.store.apply

    def apply(ops: list[dict[str, Any]]) -> None:
        if any(op.get("op") == "status" for op in ops):
            raise StoreError("attempt to write a readonly database (test)")
        real_apply(ops)

    with caplog.at_level(logging.ERROR, logger="esl_guard.store.writer"):
        daemon.store.apply = apply  # type: ignore[method-assign]
        assert wait_for(lambda: daemon.writer.write_failures >= 3, timeout=10)
    lines = [r.getMessage() for r in caplog.records
             if r.name == "esl_guard.store.writer" and r.levelno >= logging.ERROR]
    assert lines and lines[0].startswith("cannot write the daemon status to the database: "
                                         "attempt to write a readonly database (test)")
    assert len(lines) == 1, lines  # rate-limited
    scraped = generate_latest(daemon.metrics.registry).decode()
    count = [line for line in scraped.splitlines()
             if line.startswith("esl_guard_database_write_failures_total ")]
    assert count and float(count[0].split()[1]) >= 3, scraped
