"""Replay output: one JSON object per decision (the fields of ``audit --json`` plus ``clause``)
and a summary object, or text grouped by account followed by a summary."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any, TextIO

from esl_guard.model import ActionKind
from esl_guard.replay.engine import Decision, Stats


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def local(t: float | None) -> str:
    if t is None:
        return "forever"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def audit_doc(d: Decision, seq: int) -> dict[str, Any]:
    """The row ``esl-guard audit --json`` would print for this decision, plus its clause."""
    a = d.action
    return {"time": iso(d.time), "account": a.account, "kind": a.kind.value,
            "rule": a.rule.value if a.rule else None, "uuid": a.uuid, "node": a.node,
            "dry_run": a.dry_run, "detail": a.detail, "limit": a.limit, "observed": a.observed,
            "origin": str(a.extra.get("origin", "auto")), "event_id": f"replay-{seq}",
            "epoch": d.time, "clause": d.clause, "destination": a.destination,
            "destination_class": a.destination_class}


def describe(d: Decision) -> str:
    """One text line for a decision (without the account)."""
    a = d.action
    what = f"{a.rule.value} ({d.clause or '-'})" if a.rule else a.detail or "-"
    parts = [local(d.time), f"{a.kind.value:<9}", what]
    if a.uuid:
        parts.append(f"call {a.uuid}")
    if a.destination_class:
        parts.append(f"to {a.destination or '?'} ({a.destination_class})")
    if a.observed is not None or a.limit is not None:
        parts.append(f"observed {a.observed or '-'} vs limit {a.limit or '-'}")
    if a.kind is ActionKind.HANGUP and a.cause:
        parts.append(a.cause)
    if a.kind is ActionKind.LOCK:
        parts.append(f"until {local(a.until)}")
    if a.dry_run:
        parts.append("DRY-RUN")
    return "  ".join(parts)


class Printer:
    """Receives decisions as they are taken; JSON goes out at once, text at the end."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.seq = 0
        self.by_account: dict[str, list[str]] = defaultdict(list)

    def __call__(self, d: Decision) -> None:
        self.seq += 1
        if self.as_json:
            self.out.write(json.dumps(audit_doc(d, self.seq), ensure_ascii=False) + "\n")
        else:
            self.by_account[d.action.account].append(describe(d))

    def finish(self, stats: Stats, extra: dict[str, Any]) -> None:
        doc = summary(stats, extra)
        if self.as_json:
            self.out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            return
        for account in sorted(self.by_account):
            self.out.write(f"{account}\n")
            for line in self.by_account[account]:
                self.out.write(f"  {line}\n")
        if self.by_account:
            self.out.write("\n")
        self.out.write("\n".join(summary_text(doc)) + "\n")


def summary(stats: Stats, extra: dict[str, Any]) -> dict[str, Any]:
    by_rule: dict[str, dict[str, int]] = defaultdict(dict)
    for (rule, kind), n in sorted(stats.by_rule.items()):
        by_rule[rule][kind] = n
    return {"kind": "summary", "calls_seen": stats.calls, "events": stats.events,
            "first": stats.first, "last": stats.last,
            "calls_hung_up": len(stats.hung_up), "accounts_locked": sorted(stats.locked),
            "calls_hung_up_dry_run": len(stats.dry_hung_up),
            "accounts_locked_dry_run": sorted(stats.dry_locked),
            "by_rule": dict(by_rule), **extra}


def summary_text(doc: dict[str, Any]) -> list[str]:
    span = ""
    if doc["first"] is not None:
        span = (f", {local(doc['first'])} .. {local(doc['last'])} "
                f"({doc['last'] - doc['first']:.1f} s)")
    lines = [f"summary: {doc['calls_seen']} calls seen ({doc['events']} events){span}",
             f"  calls that would have been hung up: {doc['calls_hung_up']}",
             f"  accounts that would have been locked: {len(doc['accounts_locked'])}"
             + (f" ({', '.join(doc['accounts_locked'])})" if doc["accounts_locked"] else "")]
    if doc["calls_hung_up_dry_run"] or doc["accounts_locked_dry_run"]:
        lines.append(f"  dry run (logged only): {doc['calls_hung_up_dry_run']} calls, "
                     f"{len(doc['accounts_locked_dry_run'])} locks")
    for rule, kinds in doc["by_rule"].items():
        lines.append(f"  {rule}: " + ", ".join(f"{n} {k}{'s' if n != 1 else ''}"
                                              for k, n in kinds.items()))
    if doc.get("bad_rows"):
        lines.append(f"  bad rows/events skipped: {doc['bad_rows']} (listed on stderr)")
    return lines
