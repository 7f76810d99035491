"""The observability pack (contrib/) uses only metrics and labels esl-guard exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from esl_guard.metrics import Metrics

ROOT = Path(__file__).parent.parent
ALERTS = ROOT / "contrib" / "prometheus" / "esl-guard-alerts.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "esl-guard-dashboard.json"
SELECTOR = re.compile(r"\b(esl_guard_[a-z_]+)(\{[^}]*\})?")
LABEL = re.compile(r"([a-z_]+)\s*(?:=~|!=|!~|=)")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "summary": ("_sum", "_count"), "unknown": ("",)}


def exported() -> dict[str, set[str]]:
    """Sample names a scrape of a fresh daemon's registry can show, with their label names."""
    metrics = Metrics()
    metrics.event_counts["CHANNEL_CREATE"] = 1  # its label shows only with a sample
    registry = metrics.registry
    out: dict[str, set[str]] = {}
    families = text_string_to_metric_families(generate_latest(registry).decode())
    for family in families:
        labels = {"instance", "job"}
        for sample in family.samples:
            labels |= set(sample.labels) - {"le", "quantile"}
        if family.name.endswith("_created"):
            continue
        for suffix in SUFFIXES[family.type]:
            out[family.name + suffix] = labels
    # labels of labelled metrics that have no sample until first used
    for collector in list(registry._collector_to_names):  # noqa: SLF001
        names = getattr(collector, "_labelnames", ())
        base = getattr(collector, "_name", None)
        if base:
            for sample_name in list(out):
                if sample_name.startswith(base):
                    out[sample_name] |= set(names)
    return out


def expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(ALERTS.read_text())
    exprs = [(f"alert {r['alert']}", str(r["expr"])) for g in doc["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [(f"panel {p['title']}", t["expr"]) for p in dash["panels"] for t in p["targets"]]
    exprs += [("variable " + v["name"], v["query"]) for v in dash["templating"]["list"]
              if v["type"] == "query"]
    return exprs


def test_every_metric_and_label_the_pack_uses_is_exported() -> None:
    known = exported()
    assert "esl_guard_database_write_failures_total" in known
    assert {"rule", "action", "dry_run"} <= known["esl_guard_actions_total"]
    used = 0
    problems = []
    for where, expr in expressions():
        for name, selector in SELECTOR.findall(expr):
            used += 1
            if name not in known:
                problems.append(f"{where}: {name} is not exported")
                continue
            for label in LABEL.findall(selector or ""):
                if label not in known[name]:
                    problems.append(f"{where}: {name} has no label {label}")
        for group in BY.findall(expr):
            names = SELECTOR.findall(expr)
            for label in (x.strip() for x in group.split(",")):
                if label and label != "le" and not any(label in known.get(n, set())
                                                       for n, _ in names):
                    problems.append(f"{where}: no metric in it has the label {label}")
    assert not problems, problems
    assert used >= 20


def test_the_alerts_cover_what_an_operator_pages_on() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    assert {"EslGuardDown", "EslGuardNodeDisconnected", "EslGuardDatabaseUnavailable",
            "EslGuardJournalGrowing", "EslGuardEnforcementSpike"} <= set(rules)
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]


def test_every_exported_metric_is_on_the_dashboard() -> None:
    text = DASHBOARD.read_text()
    missing = {n for n in exported() if not n.endswith(("_sum", "_count"))
               and n not in text and n.removesuffix("_bucket") not in text}
    assert not missing, missing
    panels = json.loads(text)["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
