"""What the running daemon answers on its control socket (:mod:`esl_guard.control`): the
state of this instant, for ``esl-guard status`` and ``esl-guard status ACCOUNT``.

Read-only views of the tracker; nothing here changes state.  ``now`` is the monotonic clock of
the tracker's windows, ``wall`` the wall clock.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from esl_guard.model import Limits, Rate, format_duration
from esl_guard.policy.windows import count_since


def _window(rule: str, times: Iterable[float], limit: Rate | None, now: float) -> dict[str, Any]:
    """A sliding window's count at ``now`` against its ``N/W`` limit."""
    observed = 0 if limit is None else count_since(sorted(times), now - limit.window)
    return {"rule": rule, "observed": observed, "limit": None if limit is None else str(limit),
            "max": None if limit is None else limit.count}


def _gauge(rule: str, observed: float, limit: float | None, shown: str | None = None
           ) -> dict[str, Any]:
    return {"rule": rule, "observed": observed,
            "limit": limit if shown is None or limit is None else shown, "max": limit}


def windows(st: Any, limits: Limits, now: float) -> list[dict[str, Any]]:
    """Each limit of the account with what it holds now (``max``: the count it may reach;
    ``limit`` None: the limit is off)."""
    calls = list(st.calls) if st is not None else []
    longest = max((now - c.answered for c in calls if c.answered is not None), default=0.0)
    out = [
        _gauge("max_concurrent_calls", len(calls), limits.max_concurrent_calls),
        _window("max_call_rate", (st.creations or ()) if st else (), limits.max_call_rate, now),
        _gauge("max_call_duration", round(longest, 1), limits.max_call_duration,
               format_duration(limits.max_call_duration or 0)),
        _window("lock_after", (st.violations or ()) if st else (), limits.lock_after, now),
    ]
    recent = getattr(st, "recent", None)
    if limits.max_distinct_destinations is not None:
        out.append(_window("max_distinct_destinations",
                           recent.destinations.values() if recent else (),
                           limits.max_distinct_destinations, now))
    if limits.max_source_ips is not None:
        out.append(_window("max_source_ips", recent.source_ips.values() if recent else (),
                           limits.max_source_ips, now))
    if limits.max_short_calls is not None:
        out.append(_window("max_short_calls", recent.short_calls if recent else (),
                           limits.max_short_calls, now))
    if limits.max_sequential_destinations is not None:
        out.append(_gauge("max_sequential_destinations", recent.run if recent else 0,
                          limits.max_sequential_destinations))
    if limits.max_inbound_concurrent_calls is not None:
        out.append(_gauge("max_inbound_concurrent_calls", sum(1 for c in calls if c.inbound),
                          limits.max_inbound_concurrent_calls))
    return out


def _count(values: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))


def _class_of(call: Any) -> str | None:
    """The destination class of a tracked call (``Call.cls``, issue 12), or None."""
    state = getattr(call, "cls", None)
    return None if state is None else state.cls


def account_detail(tracker: Any, limits: Limits, account: str, now: float, wall: float,
                   recent: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """One account as the daemon holds it at this instant: its live calls (by node, and by
    destination class of issue 12 where calls have one), each window against its
    limit, its lock and this run's latest decisions about it."""
    st = tracker.accounts.get(account)
    calls = sorted(st.calls, key=lambda c: (c.node, c.uuid)) if st is not None else []
    lock = tracker.locks.get(account)
    return {
        "account": account,
        "time": wall,
        "live_calls": len(calls),
        "calls": [{"uuid": c.uuid, "node": c.node, "answered": c.answered is not None,
                   "age": None if c.seen is None else round(now - c.seen, 1),
                   "class": _class_of(c), "destination": c.destination} for c in calls],
        "by_node": _count(c.node for c in calls),
        "by_class": _count(_class_of(c) for c in calls),
        "windows": windows(st, limits, now),
        "locked": tracker.is_locked(account),
        "lock": None if lock is None else {"until": lock.until_wall, "reason": lock.reason,
                                           "origin": lock.origin, "since": lock.since,
                                           "lock_id": lock.lock_id},
        "dry_run": limits.dry_run,
        "decisions": [dict(r) for r in recent if r.get("account") == account],
    }
