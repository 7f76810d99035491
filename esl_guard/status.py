"""`esl-guard status`: the daemon's last snapshot (written to the database every few seconds)
plus the locks and audit rows the database holds."""
from __future__ import annotations

import json
import time
from typing import Any

STALE_AFTER = 30.0


def _ago(now: float, t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0, int(now - t))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render_status(store: Any, config: Any, *, as_json: bool, now: float) -> str:
    snap_row = store.get_status()
    locks = store.active_locks(now)
    if as_json:
        doc: dict[str, Any] = {"snapshot": snap_row[1] if snap_row else None,
                               "snapshot_age": (now - snap_row[0]) if snap_row else None,
                               "locks": [{"account": lk.account, "since": lk.since,
                                          "until": lk.until, "reason": lk.reason,
                                          "origin": lk.origin} for lk in locks]}
        return json.dumps(doc, indent=2)
    out: list[str] = []
    if snap_row is None:
        out.append("daemon: no status yet (is `esl-guard run` running with this conf?)")
        snap: dict[str, Any] = {}
    else:
        updated, snap = snap_row
        age = now - updated
        state = "running" if age < STALE_AFTER else f"NOT REPORTING (last status {_ago(now, updated)} ago)"
        out.append(f"daemon: {state}, up {_ago(now, snap.get('started'))}, audit queue "
                   f"{snap.get('audit_queue', 0)}, journal {snap.get('journal_bytes', 0)} bytes, "
                   f"database {'ok' if snap.get('db_ok', True) else 'UNAVAILABLE'}")
    out.append("")
    out.append("nodes:")
    nodes = snap.get("nodes") or [{"name": n.name, "host": n.host, "port": n.port,
                                   "connected": None} for n in config.nodes]
    for n in nodes:
        state = {True: f"connected {_ago(now, n.get('since'))}", False: "DISCONNECTED",
                 None: "unknown"}[n.get("connected")]
        err = f" ({n['last_error']})" if n.get("last_error") and not n.get("connected") else ""
        out.append(f"  {n['name']:<16} {n['host']}:{n['port']:<6} {state}{err}")
    out.append("")
    out.append(f"active calls: {snap.get('active_calls', '?')}")
    busiest = snap.get("busiest") or []
    if busiest:
        out.append("busiest accounts:")
        for b in busiest:
            limit = b.get("limit")
            shown = "no limit" if limit is None else limit
            out.append(f"  {b['account']:<24} {b['active']:>5} / {shown}")
    out.append("")
    if locks:
        out.append("active locks:")
        for lk in locks:
            until = "forever" if lk.until is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                     time.localtime(lk.until))
            out.append(f"  {lk.account:<24} until {until:<19} {lk.origin:<6} {lk.reason}")
    else:
        out.append("active locks: none")
    hour = store.audit(since=now - 3600)
    recent = hour[-10:]
    by_clause: dict[str, int] = {}
    for r in hour:
        if r["kind"] in ("violation", "warn", "lock") and r.get("clause"):
            by_clause[r["clause"]] = by_clause.get(r["clause"], 0) + 1
    if by_clause:
        out.append("")
        out.append("decisions by clause (last hour): " + ", ".join(
            f"{clause} {n}" for clause, n in sorted(by_clause.items())))
    out.append("")
    out.append("recent actions (last hour):" if recent else "recent actions: none in the last hour")
    for r in recent:
        out.append(f"  {time.strftime('%H:%M:%S', time.localtime(r['time']))} {r['kind']:<9} "
                   f"{r['account']:<20} {r.get('rule') or '-':<28} {r.get('clause') or '-':<18} "
                   f"{r.get('uuid') or ''}"
                   f"{' (dry run)' if r.get('dry_run') else ''}")
    return "\n".join(out)
