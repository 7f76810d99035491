"""Log formats (issue 16 bugs 6 and 7): JSON lines whose facts are fields, times with a zone."""
from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from esl_guard.logsetup import JsonFormatter, TextFormatter, key_values, setup_logging
from esl_guard.model import Action, ActionKind, Rule
from esl_guard.service import Guard


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("esl_guard")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream, handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_decision_logged_by_the_service_has_its_facts_as_json_fields(
        captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, _ = captured
    detail = "3 live calls, limit 2 (it's \"over\")\nsecond line"
    action = Action(ActionKind.HANGUP, "acme", Rule.CONCURRENCY, node="fs1",
                    uuid="5b2c9a3e-0000-4000-8000-000000000001", cause="CALL_REJECTED",
                    limit="2", observed="3", detail=detail)
    # the service's own logging of a decision, whatever way it passes the facts
    Guard._log_action(None, action)  # type: ignore[arg-type]
    doc = lines(stream)[0]
    assert doc["logger"] == "esl_guard.enforce" and doc["level"] == "warning"
    assert doc["account"] == "acme" and doc["rule"] == "max_concurrent_calls"
    assert doc["uuid"] == "5b2c9a3e-0000-4000-8000-000000000001" and doc["node"] == "fs1"
    assert doc["limit"] in ("2", 2) and doc["observed"] in ("3", 3)
    assert doc["dry_run"] is False and doc["detail"] == detail
    assert str(doc["message"]).startswith("hangup: ")


def test_lock_lines_carry_their_expiry_and_unsafe_accounts_are_unquoted(
        captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, _ = captured
    Guard._log_action(None, Action(ActionKind.LOCK, "bad account", Rule.LOCK_AFTER,  # type: ignore[arg-type]
                                   until=1_900_000_000.0, dry_run=True))
    doc = lines(stream)[0]
    assert doc["account"] == "bad account" and doc["until"] == "2030-03-17T17:46:40Z"
    assert doc["dry_run"] is True and doc["uuid"] is None


def test_extra_fields_become_json_fields_and_never_replace_the_formatters_own(
        captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, _ = captured
    logging.getLogger("esl_guard.test").warning(
        "refused %d calls", 7, extra={"account": "acme", "count": 7, "message_id": "x",
                                      "time": "not mine", "level": "nope"})
    doc = lines(stream)[0]
    assert doc["message"] == "refused 7 calls" and doc["level"] == "warning"
    assert doc["account"] == "acme" and doc["count"] == 7 and doc["message_id"] == "x"
    assert doc["time_"] == "not mine" and doc["level_"] == "nope"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(doc["time"]))


@pytest.mark.parametrize("message", [
    "node fs1: resync failed, keeping the calls we know (timeout); retrying soon",
    "audit database is back after 3.2s; replaying 4 queued ops",
    "state loaded: 3 active locks, 0 recent violations",
    "hangup: account=acme and then some free text",
])
def test_free_text_is_left_alone(message: str) -> None:
    assert key_values(message) is None


def test_text_lines_start_with_an_iso_time_with_its_zone() -> None:
    record = logging.LogRecord("esl_guard", logging.INFO, __file__, 1, "hello", None, None)
    line = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d INFO esl_guard: hello$",
                    line), line


def test_setup_logging_json_installs_the_json_formatter() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        setup_logging("json", "INFO")
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
