"""Every enforcement decision, as pure functions: ``check_RULE(view, limits, now, wall)``.

Nothing here mutates, logs, reads a clock or does I/O.  ``view`` is a read-only
:class:`AccountView`; ``now`` is the monotonic clock (windows, durations), ``wall`` the
wall clock (lock expiry, escalation).  The tracker (``esl_guard.tracker``) holds the state and
applies the verdicts; the replay runs the same functions on recorded timestamps.

Rule -> function:

- ``fail_mode = closed`` (lock state unknown) -> :func:`check_lock_state`
- a lock in force                              -> :func:`check_locked` (:func:`lock_active`)
- ``max_call_rate``                            -> :func:`check_rate`
- ``max_concurrent_calls``                     -> :func:`check_concurrency`
- all admission rules, in order                -> :func:`admit` (:data:`ADMISSION_RULES`)
- a call adopted by a resync                   -> :func:`adopt` (:data:`ADOPTION_RULES`)
- ``max_call_duration``                        -> :func:`check_duration`
- ``lock_after`` + escalation                  -> :func:`check_lock_after`, :func:`lock_duration`
- lock expiry                                  -> :func:`check_lock_expiry`
- a channel list that lags, a lost node,       -> :mod:`esl_guard.policy.calls`
  deferred hangups, idle accounts, a restart      (:func:`keeps_unlisted`, :func:`node_lost`,
                                                  :func:`restarted`,
                                                  :func:`due_hangups`, :func:`release_at`)
- a listed call's answer time                   -> :func:`needs_answer_time`, :func:`answered_ago`
- detectors (issue 13), in ``detectors.py``: ``caller_id_allowed`` -> :func:`check_caller_id`,
  ``max_inbound_concurrent_calls`` -> :func:`check_inbound_concurrency`, ``max_short_calls``
  -> :func:`check_short_calls` (admission) and :func:`check_short_call_end` (a call's end),
  ``max_source_ips`` -> :func:`check_source_ips`, ``max_distinct_destinations`` ->
  :func:`check_distinct_destinations`, ``max_sequential_destinations`` ->
  :func:`check_sequential_destinations`
- ``warn_only``                                -> :func:`is_warning` (used by :func:`admit`)
- the daemon's locks vs the database's         -> :func:`reconcile_locks`
- lock_after windows after a restart           -> :func:`restored_windows`
- what mod_hash holds (value, stale entries)   -> :func:`hash_value`, :func:`stale_hash_keys`
- destination classes (issue 12)               -> :mod:`esl_guard.policy.destinations`
                                                  (:class:`Destinations`: classify, class limits)
- ``max_minutes``                              -> :func:`check_minutes` (admission and live
                                                  calls), :func:`minutes_deadline`,
                                                  :class:`MinuteWindow` (:mod:`.minutes`)
- would the account's NEXT call be refused?    -> :func:`next_call_blocked`
- is the account's NEXT call refused by the     -> :func:`next_call_gate` (``gate.py``),
  dialplan (the admission gate in mod_hash)       :func:`gate_value`, :func:`stale_gate_keys`

Adding a rule: write ``check_RULE(view, limits, now, wall) -> Verdict | None`` in a module
here (``clause_of`` gives its clause: add the rule to ``model.Rule`` and ``model.CLAUSES``), add
it to :data:`ADMISSION_RULES` (decided when a call's account becomes known) or call it where
its moment is (the tracker's ``tick`` for timers); if it needs more facts, add them to
:class:`AccountView` (built in one place, ``Tracker._view``) or to :class:`CallFacts` (the
tracker's ``Call``), and its limit to ``model.Limits`` and the ``config.settings.SETTINGS``
table.  Give it a table test in ``tests/test_policy.py``.
"""
from __future__ import annotations

from esl_guard.policy.admission import (
    ADMISSION_RULES,
    ADOPTION_RULES,
    LOCK_STATE_UNKNOWN,
    NEXT_CALL_RULES,
    Check,
    admit,
    adopt,
    check_concurrency,
    check_lock_state,
    check_locked,
    check_rate,
    counts_as_attempt,
    first_verdict,
    is_warning,
    next_call_blocked,
)
from esl_guard.policy.calls import (
    ACCOUNT_IDLE,
    answered_ago,
    carries_on,
    due_hangups,
    ended_horizon,
    keeps_unlisted,
    needs_answer_time,
    node_lost,
    recheck_after,
    release_at,
    restarted,
    still_due,
    violation_counts_now,
)
from esl_guard.policy.destinations import (
    CLASS_KEYS,
    CLASS_LIMIT_KEYS,
    NO_CLASS,
    DestinationClass,
    Destinations,
    class_limits,
    dialled,
)
from esl_guard.policy.detectors import (
    RecentCalls,
    check_caller_id,
    check_distinct_destinations,
    check_inbound_concurrency,
    check_sequential_destinations,
    check_short_call_end,
    check_short_calls,
    check_source_ips,
    is_inbound,
    is_short,
    next_number,
    sequential_run,
    uses_recent,
)
from esl_guard.policy.duration import check_duration, duration_deadline
from esl_guard.policy.gate import (
    GATE_REFRESH,
    GATE_TTL,
    Gate,
    gate_key,
    gate_realm,
    gate_value,
    next_call_gate,
    stale_gate_keys,
)
from esl_guard.policy.locks import (
    ESCALATION_WINDOW,
    LockChange,
    check_lock_after,
    check_lock_expiry,
    escalation_count,
    hash_value,
    lock_active,
    lock_duration,
    parse_hash_dump,
    reconcile_locks,
    restored_windows,
    stale_hash_keys,
)
from esl_guard.policy.minutes import (
    MinuteWindow,
    budget,
    check_minutes,
    live_seconds,
    minutes_deadline,
    over_budget,
)
from esl_guard.policy.verdict import AccountView, CallFacts, CallInfo, Verdict
from esl_guard.policy.windows import count_from, count_since, in_window

__all__ = [
    "CLASS_KEYS", "CLASS_LIMIT_KEYS", "NEXT_CALL_RULES", "NO_CLASS", "DestinationClass",
    "Destinations", "MinuteWindow", "budget", "check_minutes", "class_limits", "dialled",
    "live_seconds", "minutes_deadline", "next_call_blocked", "over_budget",
    "GATE_REFRESH", "GATE_TTL", "Gate", "gate_key", "gate_realm", "gate_value",
    "next_call_gate", "stale_gate_keys",
    "ADMISSION_RULES", "ADOPTION_RULES", "ESCALATION_WINDOW", "LOCK_STATE_UNKNOWN",
    "AccountView", "CallFacts", "CallInfo", "Check", "LockChange", "RecentCalls", "Verdict",
    "check_caller_id", "check_distinct_destinations", "check_inbound_concurrency",
    "check_sequential_destinations", "check_short_call_end", "check_short_calls",
    "check_source_ips", "is_inbound", "is_short", "is_warning", "next_number",
    "sequential_run", "uses_recent",
    "admit", "adopt", "check_concurrency", "check_duration", "check_lock_after",
    "check_lock_expiry", "check_lock_state", "check_locked", "check_rate", "count_from",
    "count_since", "counts_as_attempt", "first_verdict", "duration_deadline", "escalation_count", "in_window",
    "hash_value", "lock_active", "lock_duration", "parse_hash_dump", "reconcile_locks",
    "restored_windows", "stale_hash_keys",
    "ACCOUNT_IDLE", "answered_ago", "carries_on", "due_hangups", "needs_answer_time",
    "still_due", "ended_horizon", "violation_counts_now",
    "keeps_unlisted", "node_lost", "recheck_after", "release_at", "restarted",
]
