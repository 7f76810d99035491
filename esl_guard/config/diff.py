"""What a reload changes, as human lines (supervisor ``diff_to_active``), and limits as conf
text.  Never shows a password."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from esl_guard.config.converters import duration, lock_duration
from esl_guard.config.settings import (
    DEFAULT_NODE,
    LIMIT_KEYS,
    SETTINGS,
    Config,
    MetricsConfig,
    NodeConfig,
)
from esl_guard.model import Limits, Rate, format_duration


def _fmt(value: Any, name: str) -> str:
    if value is None:
        return "forever" if name == "lock_duration" else "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Rate):
        return str(value)
    if isinstance(value, frozenset):
        return " ".join(sorted(value))
    if isinstance(value, float) and SETTINGS[name].convert in (duration, lock_duration):
        return format_duration(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_limits(limits: Limits) -> dict[str, str]:
    """Each limit as conf text (``"off"`` when off, ``"forever"`` for an endless lock)."""
    return {name: _fmt(getattr(limits, name), name) for name in LIMIT_KEYS}


def _changes(prefix: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return [f"{prefix} {k}: {old[k]} -> {new[k]}" for k in old if old[k] != new.get(k, old[k])]


def _node_fields(node: NodeConfig) -> dict[str, str]:
    return {f.name: _fmt(getattr(node, f.name), f.name) for f in fields(node)
            if f.name not in ("name", "password")}


def diff_config(old: Config, new: Config) -> list[str]:
    """Human lines describing what a reload changes.  Never shows a password."""
    lines: list[str] = []
    old_nodes = {n.name: n for n in old.nodes}
    new_nodes = {n.name: n for n in new.nodes}
    for name, node in new_nodes.items():
        before = old_nodes.get(name)
        section = "[freeswitch]" if name == DEFAULT_NODE else f"[freeswitch:{name}]"
        if before is None:
            lines.append(f"node {name} added ({node.address})")
            continue
        lines += _changes(section, _node_fields(before), _node_fields(node))
        if before.password != node.password:
            lines.append(f"{section} password changed")
    lines += [f"node {name} removed" for name in old_nodes if name not in new_nodes]

    db_old, db_new = old.database, new.database
    if db_old.safe_url != db_new.safe_url:
        lines.append(f"[database] url: {db_old.safe_url} -> {db_new.safe_url}")
    elif db_old.url != db_new.url:
        lines.append("[database] url: password changed")
    lines += _changes("[database]", {k: _fmt(getattr(db_old, k), k) for k in _DB_FIELDS},
                      {k: _fmt(getattr(db_new, k), k) for k in _DB_FIELDS})

    lines += _changes("[policy]", {"account_variable": old.account_variable,
                                   "lock_realm": old.lock_realm},
                      {"account_variable": new.account_variable, "lock_realm": new.lock_realm})
    old_policy, new_policy = describe_limits(old.policy), describe_limits(new.policy)
    lines += _changes("[policy]", old_policy, new_policy)

    for account in new.accounts:
        if account not in old.accounts:
            lines.append(f"account {account} added")
            continue
        was = describe_limits(old.accounts[account])
        now = describe_limits(new.accounts[account])
        # A change that only follows [policy] was already reported there.
        lines += [
            f"[account:{account}] {k}: {was[k]} -> {now[k]}" for k in LIMIT_KEYS
            if was[k] != now[k] and (was[k] != old_policy[k] or now[k] != new_policy[k])
        ]
    lines += [f"account {a} removed" for a in old.accounts if a not in new.accounts]

    def listen(m: MetricsConfig | None) -> str:
        return "off" if m is None else (f"[{m.host}]:{m.port}" if ":" in m.host
                                        else f"{m.host}:{m.port}")

    if listen(old.metrics) != listen(new.metrics):
        lines.append(f"[metrics] listen: {listen(old.metrics)} -> {listen(new.metrics)}")
    lines += _changes("[cluster]", {"failover_after": format_duration(old.cluster.failover_after)},
                      {"failover_after": format_duration(new.cluster.failover_after)})
    lines += _changes("[logging]", {"format": old.logging.format, "level": old.logging.level},
                      {"format": new.logging.format, "level": new.logging.level})
    return lines


_DB_FIELDS = ("auto_migrate", "fail_mode", "journal", "queue_max", "poll_interval",
              "audit_retention")
