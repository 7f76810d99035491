"""`esl-guard status`: the daemon's last snapshot (written to the database every few seconds,
and once more, marked `stopped`, when it stops cleanly) plus the locks and audit rows the
database holds.

The daemon is shown as
- running: its last report is fresh (younger than STALE_AFTER);
- stopped: its last report says it stopped cleanly, with the time;
- NOT REPORTING: its last report is older than STALE_AFTER and says nothing of a stop (a
  crash, a kill -9, a hung process or a database it cannot write), with the time of that report.
"""
from __future__ import annotations

import json
from typing import Any

from esl_guard import __version__
from esl_guard.render import ago, iso

STATUS_EVERY = 5.0  # the daemon's reporting interval (daemon.STATUS_EVERY)
STALE_AFTER = 3 * STATUS_EVERY + 5.0


def daemon_state(snapshot: tuple[float, dict[str, Any]] | None, now: float) -> str:
    """'running', 'stopped', 'not-reporting' or 'unknown' (no snapshot yet)."""
    if snapshot is None:
        return "unknown"
    updated, snap = snapshot
    if snap.get("stopped") is not None:
        return "stopped"
    return "running" if now - updated < STALE_AFTER else "not-reporting"


def _daemon_line(snapshot: tuple[float, dict[str, Any]], now: float, utc: bool) -> str:
    updated, snap = snapshot
    state = daemon_state(snapshot, now)
    version = f"esl-guard {snap['version']}" if snap.get("version") else "esl-guard (version ?)"
    started = snap.get("started")
    if state == "stopped":
        return (f"daemon: stopped at {iso(snap['stopped'], utc=utc)} ({ago(now, snap['stopped'])}"
                f" ago, a clean stop); {version} had been up {ago(snap['stopped'], started)}")
    if state == "not-reporting":
        return (f"daemon: NOT REPORTING since {iso(updated, utc=utc)} ({ago(now, updated)} ago): "
                f"crashed, killed, hung or unable to write its database; {version} had been up "
                f"{ago(updated, started)} at that report")
    failures = snap.get("db_write_failures") or 0
    db = "ok" if snap.get("db_ok", True) else "UNAVAILABLE"
    if failures:
        db += f", {failures} failed writes since start"
    return (f"daemon: running, {version}, up {ago(now, started)}, last report "
            f"{ago(now, updated)} ago; audit queue {snap.get('audit_queue', 0)}, journal "
            f"{snap.get('journal_bytes', 0)} bytes, database {db}")


def render_status(store: Any, config: Any, *, as_json: bool, now: float,
                  utc: bool = False) -> str:
    snap_row = store.get_status()
    locks = store.active_locks(now)
    if as_json:
        doc: dict[str, Any] = {"state": daemon_state(snap_row, now),
                               "cli_version": __version__,
                               "snapshot": snap_row[1] if snap_row else None,
                               "snapshot_time": iso(snap_row[0], utc=True) if snap_row else None,
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
        snap = snap_row[1]
        out.append(_daemon_line(snap_row, now, utc))
    live = daemon_state(snap_row, now) == "running"
    out.append("")
    out.append("nodes:" if live or snap_row is None else "nodes (at the last report):")
    nodes = snap.get("nodes") or [{"name": n.name, "host": n.host, "port": n.port,
                                   "connected": None} for n in config.nodes]
    for n in nodes:
        connected = n.get("connected")
        if connected and n.get("since"):
            state = f"connected since {iso(n['since'], utc=utc)}"
        else:
            state = {True: "connected", False: "DISCONNECTED", None: "unknown"}[connected]
        err = f" ({n['last_error']})" if n.get("last_error") and not connected else ""
        out.append(f"  {n['name']:<16} {n['host']}:{n['port']:<6} {state}{err}")
    out.append("")
    out.append(f"active calls: {snap.get('active_calls', '?')}")
    busiest = snap.get("busiest") or []
    if busiest:
        out.append("busiest accounts:")
        for b in busiest:
            limit = b.get("limit")
            shown = "no limit" if limit is None else limit
            minutes = (f"   {b['minutes']:g} min / {b['max_minutes']}"
                       if b.get("max_minutes") else "")
            out.append(f"  {b['account']:<24} {b['active']:>5} / {shown}{minutes}")
            for cls, u in sorted((b.get("classes") or {}).items()):
                limit = "no limit" if u.get("limit") is None else u["limit"]
                minutes = (f"   {u['minutes']:g} min / {u['max_minutes']}"
                           if u.get("max_minutes") else "")
                out.append(f"    {cls:<22} {u.get('active', 0):>5} / {limit}{minutes}")
    out.append("")
    if locks:
        out.append("active locks:")
        for lk in locks:
            out.append(f"  {lk.account:<24} until {iso(lk.until, utc=utc):<25} {lk.origin:<6} "
                       f"{lk.reason}")
    else:
        out.append("active locks: none")
    by_clause: dict[str, int] = {}
    for r in store.audit(since=now - 3600, kinds=("violation", "warn", "lock")):
        if r.get("clause"):
            by_clause[r["clause"]] = by_clause.get(r["clause"], 0) + 1
    if by_clause:
        out.append("")
        out.append("decisions by clause (last hour): " + ", ".join(
            f"{clause} {n}" for clause, n in sorted(by_clause.items())))
    recent = store.audit(since=now - 3600, limit=10)
    out.append("")
    out.append("recent actions (last hour):" if recent else "recent actions: none in the last hour")
    for r in recent:
        out.append(f"  {iso(r['time'], utc=utc)} {r['kind']:<9} {r['account']:<20} "
                   f"{r.get('rule') or '-':<28} {r.get('clause') or '-':<18} {r.get('uuid') or ''}"
                   f"{' (dry run)' if r.get('dry_run') else ''}")
    return "\n".join(out)
