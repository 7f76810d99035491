"""`esl-guard status`: the state of this instant, asked of the running daemon over its control
socket (:mod:`esl_guard.control`); when the daemon cannot be asked, its last stored snapshot
(written to the database every few seconds, and once more, marked `stopped`, when it stops
cleanly), saying how old it is.  Plus the locks and audit rows the database holds.
`esl-guard status ACCOUNT`: one account (:func:`render_account`).

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
from esl_guard.render import ago, audit_table, iso, table

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
    role = f" ({snap['role']} on {snap.get('host')} pid {snap.get('pid')})" \
        if snap.get("role") else ""
    report = "live" if now == updated else f"last report {ago(now, updated)} ago"
    return (f"daemon: running{role}, {version}, up {ago(now, started)}, {report}; audit queue "
            f"{snap.get('audit_queue', 0)}, journal "
            f"{snap.get('journal_bytes', 0)} bytes, database {db}")


def _source_line(snap_row: tuple[float, dict[str, Any]] | None, live: bool,
                 unreachable: str | None, now: float) -> str:
    if live:
        return "(the state of this instant, asked of the daemon over its control socket)"
    why = f"daemon not reachable: {unreachable}" if unreachable else "daemon not asked"
    if snap_row is None:
        return f"({why}; no stored report either)"
    return f"({why}; showing its last stored report, {ago(now, snap_row[0])} old)"


def _member_lines(members: list[dict[str, Any]], now: float, utc: bool) -> list[str]:
    """The instances of a group (PostgreSQL, issue 14): host, pid, role, since, last seen."""
    active = [m for m in members if m["role"] == "active" and now - m["last_seen"] < STALE_AFTER]
    head = (f"instances: {len(members)}, active: "
            + (f"{active[0]['host']} pid {active[0]['pid']}" if len(active) == 1 else
               "NONE" if not active else f"{len(active)} (split: each acts, decisions stored once)"))
    out = [head]
    for m in members:
        seen = now - m["last_seen"]
        role = m["role"] if seen < STALE_AFTER else f"{m['role']}, NOT SEEN"
        out.append(f"  {m['host']:<20} pid {m['pid']:<7} {role:<20} since "
                   f"{iso(m['since'], utc=utc)}, last seen {ago(now, m['last_seen'])} ago")
    return out


def render_status(store: Any, config: Any, *, as_json: bool, now: float,
                  utc: bool = False, live: dict[str, Any] | None = None,
                  unreachable: str | None = None) -> str:
    """``live``: the daemon's answer on its control socket (None: use the stored report;
    ``unreachable`` says why)."""
    snap_row = (now, live) if live is not None else store.get_status()
    locks = store.active_locks(now)
    members = store.members()
    if as_json:
        doc: dict[str, Any] = {"state": daemon_state(snap_row, now),
                               "source": "live" if live is not None else "stored",
                               "unreachable": unreachable,
                               "cli_version": __version__,
                               "snapshot": snap_row[1] if snap_row else None,
                               "snapshot_time": iso(snap_row[0], utc=True) if snap_row else None,
                               "snapshot_age": (now - snap_row[0]) if snap_row else None,
                               "locks": [{"account": lk.account, "since": lk.since,
                                          "until": lk.until, "reason": lk.reason,
                                          "origin": lk.origin} for lk in locks],
                               "members": members}
        return json.dumps(doc, indent=2)
    out: list[str] = []
    if snap_row is None:
        out.append("daemon: no status yet (is `esl-guard run` running with this conf?)")
        snap: dict[str, Any] = {}
    else:
        snap = snap_row[1]
        out.append(_daemon_line(snap_row, now, utc))
    out.append(_source_line(snap_row, live is not None, unreachable, now))
    if members:
        out += _member_lines(members, now, utc)
    fresh = daemon_state(snap_row, now) == "running"
    out.append("")
    out.append("nodes:" if fresh or snap_row is None else "nodes (at the last report):")
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


# --------------------------------------------------------------------------- one account

WINDOW_HEADER = ("LIMIT", "NOW", "MAX")
CALLS_HEADER = ("UUID", "NODE", "CLASS", "ANSWERED", "SEEN")
MAX_CALLS_SHOWN = 50


def _limit_rows(windows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows = []
    for w in windows:
        limit = w.get("limit")
        shown = "off" if limit is None else str(limit)
        over = w.get("max") is not None and w["observed"] >= w["max"]
        unit = "s" if w["rule"] == "max_call_duration" and w["observed"] != "?" else ""
        rows.append((w["rule"], f"{w['observed']}{unit}{' (AT LIMIT)' if over else ''}", shown))
    return rows


def render_account(store: Any, account: str, *, as_json: bool, now: float, utc: bool = False,
                   live: dict[str, Any] | None = None, unreachable: str | None = None,
                   limits_rows: list[dict[str, Any]] | None = None) -> str:
    """One account: live calls by node and destination class, each window against its limit,
    its lock, and its latest decisions from the audit trail.  Without ``live`` (the daemon not
    reachable), ``limits_rows`` shows the limits from the conf and the rest comes from the
    database."""
    decisions = store.audit(account=account, limit=10)
    lock = next((lk for lk in store.active_locks(now) if lk.account == account), None)
    if as_json:
        return json.dumps({"account": account, "source": "live" if live else "stored",
                           "unreachable": unreachable, "live": live,
                           "limits": limits_rows if live is None else live["windows"],
                           "lock": None if lock is None else {
                               "since": lock.since, "until": lock.until, "reason": lock.reason,
                               "origin": lock.origin},
                           "decisions": [dict(r) for r in decisions]}, indent=2)
    out = [f"account {account}"]
    if live is None:
        out.append(f"(daemon not reachable: {unreachable}; live calls unknown, limits from the "
                   "conf, lock and decisions from the database)")
    else:
        out.append(f"(the state of this instant, at {iso(live['time'], utc=utc)})")
        by_node = ", ".join(f"{n} {c}" for n, c in live["by_node"].items()) or "none"
        line = f"live calls: {live['live_calls']} (by node: {by_node}"
        if live.get("by_class"):
            line += "; by class: " + ", ".join(f"{k} {c}" for k, c in live["by_class"].items())
        out.append(line + ")")
        calls = live["calls"]
        if calls:
            out += ["  " + r for r in table(CALLS_HEADER, [
                (c["uuid"], c["node"], c.get("class") or "-", "yes" if c["answered"] else "no",
                 "-" if c["age"] is None else f"{c['age']:g}s ago")
                for c in calls[:MAX_CALLS_SHOWN]])]
        if len(calls) > MAX_CALLS_SHOWN:
            out.append(f"  ... and {len(calls) - MAX_CALLS_SHOWN} more (--json lists them all)")
    out.append("")
    rows = _limit_rows(live["windows"] if live is not None else (limits_rows or []))
    out += table(WINDOW_HEADER, rows)
    out.append("")
    if lock is not None:
        out.append(f"locked until {iso(lock.until, utc=utc)} ({lock.origin}, since "
                   f"{iso(lock.since, utc=utc)}): {lock.reason}")
    elif live is not None and live.get("locked"):
        out.append("locked (decided by the daemon, not in the database yet)")
    else:
        out.append("not locked")
    out.append("")
    if decisions:
        out.append("last decisions (audit trail):")
        out += ["  " + r for r in audit_table(decisions, utc=utc)]
    else:
        out.append("no decisions in the audit trail")
    return "\n".join(out)
