"""The cookbook's confs are accepted by check-config, and the docs name what exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from esl_guard.cli import main
from esl_guard.config import load_config

ROOT = Path(__file__).parent.parent
COOKBOOK = sorted((ROOT / "conf" / "cookbook").glob("*.conf"))


def test_the_cookbook_has_the_four_kinds_of_customers() -> None:
    assert {p.stem for p in COOKBOOK} == {"residential", "sip-trunk", "call-centre", "wholesale"}


@pytest.mark.parametrize("conf", COOKBOOK, ids=lambda p: p.stem)
def test_check_config_accepts_each_cookbook_conf(conf: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ESL_PASSWORD", "not-ClueCon")
    assert main(["check-config", "-c", str(conf)]) == 0, capsys.readouterr().err
    assert ": OK;" in capsys.readouterr().out
    config = load_config(conf)
    assert config.accounts  # each shows per-account overrides
    assert conf.name in (ROOT / "docs" / "cookbook.md").read_text()


def test_the_docs_name_only_keys_that_exist() -> None:
    """Every `key = value` in the cookbook and tuning guide's examples is a known setting."""
    from esl_guard.config import SETTINGS

    known = set(SETTINGS)
    for doc in ("cookbook.md", "tuning.md"):
        text = (ROOT / "docs" / doc).read_text()
        for key in re.findall(r"`([a-z_]+) = [^`]+`", text):
            assert key in known, f"docs/{doc}: {key}"


def test_the_readme_lists_exactly_the_metrics_a_scrape_shows() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from esl_guard.metrics import Metrics

    metrics = Metrics()
    metrics.event_counts["CHANNEL_CREATE"] = 1
    scraped = set()
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        if not family.name.endswith("_created"):
            scraped.add(family.name + ("_total" if family.type == "counter" else ""))
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `(esl_guard_[a-z_]+)` \|", readme, re.M))
    assert listed == scraped


def test_the_readme_documents_the_cli_surface() -> None:
    readme = (ROOT / "README.md").read_text()
    for item in ("--version", "status --json", "-c DIR", "ESL_GUARD_DEBUG", "--heartbeat",
                 "--calls N", "esl-guard example conf", "--until", "--limit"):
        assert item in readme, item
    assert "pip install esl-guard" not in readme
    assert "within 0.2 s" not in readme
    assert "lock_escalation = 2 " not in readme
    conf = (ROOT / "conf" / "esl-guard.conf").read_text()
    assert "refuse to start" not in conf and "refuse every new call" in conf
