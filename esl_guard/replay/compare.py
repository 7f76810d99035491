"""``--compare``: two policies over the same timeline, reviewed like a diff.

A call's fate under a policy is whether it is hung up and by which rule (and whether only in
dry run); an account's locks are the (time, until) of each lock.  Only the hangups and locks
are kept (memory follows the decisions, not the traffic).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TextIO

from esl_guard.model import ActionKind
from esl_guard.replay.engine import Decision
from esl_guard.replay.report import local


@dataclass
class Fates:
    calls: dict[str, Decision] = field(default_factory=dict)     # uuid -> its first hangup
    locks: dict[str, list[Decision]] = field(default_factory=dict)

    def __call__(self, d: Decision) -> None:
        a = d.action
        if a.kind is ActionKind.HANGUP and a.uuid and a.uuid not in self.calls:
            self.calls[a.uuid] = d
        elif a.kind is ActionKind.LOCK:
            self.locks.setdefault(a.account, []).append(d)


def _fate(d: Decision | None) -> tuple[str, bool] | None:
    if d is None:
        return None
    return (d.action.rule.value if d.action.rule else "-", d.action.dry_run)


def _lock_key(d: Decision) -> tuple[float, float | None, bool]:
    return (round(d.time, 6), None if d.action.until is None else round(d.action.until, 6),
            d.action.dry_run)


def diff(a: Fates, b: Fates) -> list[dict[str, Any]]:
    """Every call whose fate differs and every lock present under one policy only."""
    out: list[dict[str, Any]] = []
    def first(uuid: str) -> tuple[float, str]:
        return min(x.time for x in (a.calls.get(uuid), b.calls.get(uuid)) if x), uuid

    for uuid in sorted(a.calls.keys() | b.calls.keys(), key=first):
        da, db = a.calls.get(uuid), b.calls.get(uuid)
        fa, fb = _fate(da), _fate(db)
        if fa == fb:
            continue
        some = da or db
        assert some is not None
        out.append({"kind": "call", "uuid": uuid, "account": some.action.account,
                    "a": _doc(da), "b": _doc(db)})
    for account in sorted(a.locks.keys() | b.locks.keys()):
        ka = {_lock_key(d): d for d in a.locks.get(account, [])}
        kb = {_lock_key(d): d for d in b.locks.get(account, [])}
        for key in sorted(ka.keys() - kb.keys(), key=lambda k: k[0]):
            out.append({"kind": "lock", "account": account, "a": _doc(ka[key]), "b": None})
        for key in sorted(kb.keys() - ka.keys(), key=lambda k: k[0]):
            out.append({"kind": "lock", "account": account, "a": None, "b": _doc(kb[key])})
    return out


def _doc(d: Decision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    a = d.action
    return {"epoch": d.time, "rule": a.rule.value if a.rule else None, "clause": d.clause,
            "limit": a.limit, "observed": a.observed, "dry_run": a.dry_run, "until": a.until}


def _side(doc: dict[str, Any] | None) -> str:
    if doc is None:
        return "-"
    text = f"{doc['rule']} at {local(doc['epoch'])}"
    if doc["observed"] is not None:
        text += f" ({doc['observed']} vs {doc['limit']})"
    if doc["until"] is not None:
        text += f" until {local(doc['until'])}"
    return text + (" DRY-RUN" if doc["dry_run"] else "")


def write(out: TextIO, diffs: list[dict[str, Any]], names: tuple[str, str], as_json: bool,
          totals: dict[str, Any]) -> None:
    calls = [x for x in diffs if x["kind"] == "call"]
    locks = [x for x in diffs if x["kind"] == "lock"]
    summary = {"kind": "summary", "a": names[0], "b": names[1], "calls_differ": len(calls),
               "hung_up_by_a_only": sum(1 for x in calls if x["b"] is None),
               "hung_up_by_b_only": sum(1 for x in calls if x["a"] is None),
               "locks_differ": len(locks), **totals}
    if as_json:
        for x in diffs:
            out.write(json.dumps(x, ensure_ascii=False) + "\n")
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
        return
    out.write(f"--- a: {names[0]}\n+++ b: {names[1]}\n")
    for x in calls:
        mark = "-" if x["b"] is None else "+" if x["a"] is None else "~"
        out.write(f"{mark} call {x['uuid']} {x['account']}: a: {_side(x['a'])} | "
                  f"b: {_side(x['b'])}\n")
    for x in locks:
        mark = "-" if x["b"] is None else "+"
        out.write(f"{mark} lock {x['account']}: {_side(x['a'] or x['b'])}\n")
    out.write(f"summary: {len(calls)} call(s) with a different fate "
              f"({summary['hung_up_by_a_only']} hung up by a only, "
              f"{summary['hung_up_by_b_only']} by b only, "
              f"{len(calls) - summary['hung_up_by_a_only'] - summary['hung_up_by_b_only']} "
              f"by both for a different rule), {len(locks)} lock(s) in one only; "
              f"a hangs up {totals['a_calls_hung_up']} of {totals['calls_seen']} calls, "
              f"b {totals['b_calls_hung_up']}\n")
