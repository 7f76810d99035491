"""How the CLI shows times and tables: one convention for `locks`, `audit`, `status` and the
demo.  Times are ISO 8601 with their zone: local time with its UTC offset by default
(``2026-11-29T03:30:47+01:00``), UTC with ``Z`` when asked (``--utc``), the form the JSON logs
use.  Pure functions: the caller passes every time."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def iso(epoch: float | None, *, utc: bool = False, ms: bool = False,
        none: str = "forever") -> str:
    """`epoch` as ISO 8601 with its zone; `none` when there is no time (a lock without end)."""
    if epoch is None:
        return none
    spec = "milliseconds" if ms else "seconds"
    if utc:
        moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
        return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec=spec)


def ago(now: float, then: float | None) -> str:
    """A short age: ``42s``, ``3m07s``, ``2h05m``, ``3d04h``."""
    if then is None:
        return "-"
    s = max(0, int(now - then))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns sized to their content; the last column is not padded."""
    body = [[str(c) for c in row] for row in rows]
    widths = [max([len(header[i])] + [len(r[i]) for r in body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) for i, c in enumerate(cells[:-1])] + [cells[-1]]
        return "  ".join(padded).rstrip()

    return [line(header)] + [line(r) for r in body]


AUDIT_HEADER = ("TIME", "KIND", "ACCOUNT", "RULE", "CLAUSE", "LIMIT", "SEEN", "UUID", "NODE",
                "DETAIL")


def audit_table(rows: Iterable[Mapping[str, Any]], *, utc: bool = False,
                short_uuid: bool = False) -> list[str]:
    """The audit trail as a table with a header; a dry-run row says so in its KIND."""
    out = []
    for r in rows:
        kind = str(r["kind"]) + (" (dry run)" if r.get("dry_run") else "")
        uuid = r.get("uuid") or "-"
        out.append((iso(r["time"], utc=utc), kind, str(r["account"]), r.get("rule") or "-",
                    r.get("clause") or "-", _opt(r.get("limit")), _opt(r.get("observed")),
                    uuid[:8] if short_uuid else uuid, r.get("node") or "-",
                    " ".join(str(r.get("detail") or "").split())))
    return table(AUDIT_HEADER, out)


LOCKS_HEADER = ("ACCOUNT", "SINCE", "UNTIL", "ORIGIN", "REASON")


def locks_table(locks: Iterable[Any], *, utc: bool = False) -> list[str]:
    return table(LOCKS_HEADER, [(lk.account, iso(lk.since, utc=utc), iso(lk.until, utc=utc),
                                 lk.origin, lk.reason) for lk in locks])


def _opt(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
