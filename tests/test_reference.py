"""One source of truth (issue 16, bug 9): the example conf and the settings reference are
generated from the settings table; these tests fail when a committed file drifts from it
(regenerate with ``python -m esl_guard.config.reference --write``)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from esl_guard.cli import main as cli
from esl_guard.config import load_config
from esl_guard.config.reference import SHOWN, example_conf, settings_markdown
from esl_guard.config.settings import SETTINGS, default_value

ROOT = Path(__file__).parent.parent
HINT = "stale: run `python -m esl_guard.config.reference --write` and commit the result"


def test_the_committed_example_conf_is_generated_from_the_table() -> None:
    assert (ROOT / "conf" / "esl-guard.conf").read_text() == example_conf(), HINT


def test_the_committed_settings_reference_is_generated_from_the_table() -> None:
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown(), HINT


def test_esl_guard_example_conf_prints_the_generated_conf(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["example", "conf"]) == 0
    assert capsys.readouterr().out == example_conf()


def test_every_key_is_in_both_with_its_default_and_description() -> None:
    conf, reference = example_conf(), settings_markdown()
    for name, s in SETTINGS.items():
        assert re.search(rf"^;?{name} = ", conf, re.MULTILINE), name
        row = next(line for line in reference.splitlines() if line.startswith(f"| `{name}` |"))
        if s.default is not None:
            assert f"| `{s.default}` |" in row, row
        assert s.doc.split()[0] in row, row
    assert set(SHOWN) <= set(SETTINGS), "presentation for a key the table does not have"


def test_a_changed_default_shows_in_the_generated_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    import esl_guard.config.reference as reference

    table = dict(SETTINGS)
    table["resync_interval"] = replace(SETTINGS["resync_interval"], default="42s")
    monkeypatch.setattr(reference, "SETTINGS", table)
    assert ";resync_interval = 42s " in reference.example_conf()
    assert "| `resync_interval` | `42s` |" in reference.settings_markdown()


def test_the_example_conf_is_valid_and_its_commented_keys_are_the_defaults(
        tmp_path: Path) -> None:
    conf = tmp_path / "esl-guard.conf"
    text = example_conf()
    conf.write_text(text)
    conf.chmod(0o600)
    config = load_config(conf)
    active = {m.group(1) for m in re.finditer(r"^(\w+) = ", text, re.MULTILINE)}
    node = config.nodes[0]
    for name in ("command_timeout", "connect_timeout", "resync_interval", "resync_timeout",
                 "node_lost_after", "heartbeat_interval"):
        assert name not in active and getattr(node, name) == default_value(name)
    assert config.database.audit_retention == default_value("audit_retention")
    assert config.policy.lock_escalation == default_value("lock_escalation") == 1.0
