"""Admission: may a call that just became known to belong to an account go on?

Each rule is ``check_RULE(view, limits, now, wall) -> Verdict | None``; :func:`admit` runs them in
their order and returns the first verdict.  New admission rules (destination classes, minute
budgets, detectors) are added to :data:`ADMISSION_RULES` and nowhere else.
"""
from __future__ import annotations

from collections.abc import Callable

from esl_guard.model import Limits, Rule, clause_of, format_duration
from esl_guard.policy.detectors import (
    check_caller_id,
    check_distinct_destinations,
    check_inbound_concurrency,
    check_sequential_destinations,
    check_short_calls,
    check_source_ips,
)
from esl_guard.policy.locks import lock_active
from esl_guard.policy.minutes import check_minutes
from esl_guard.policy.verdict import AccountView, Verdict
from esl_guard.policy.windows import count_since

Check = Callable[[AccountView, Limits, float, float], "Verdict | None"]

_LOCKED = clause_of(Rule.LOCKED)
LOCK_STATE_UNKNOWN = "lock state unknown (database unreachable, fail_mode = closed)"


def _call(view: AccountView) -> tuple[str | None, str | None]:
    call = view.call
    return (None, None) if call is None else (call.uuid, call.node)


def check_lock_state(view: AccountView, limits: Limits, now: float,
                     wall: float) -> Verdict | None:
    """``fail_mode = closed`` while the lock state is unknown: any account might be locked."""
    if not view.lock_state_unknown:
        return None
    uuid, node = _call(view)
    return Verdict(Rule.LOCKED, _LOCKED, uuid=uuid, node=node, detail=LOCK_STATE_UNKNOWN,
                   violation=False)


def check_locked(view: AccountView, limits: Limits, now: float, wall: float) -> Verdict | None:
    """A locked account has no calls at all."""
    lock = view.lock
    if lock is None or not lock_active(lock, wall):
        return None
    uuid, node = _call(view)
    return Verdict(Rule.LOCKED, _LOCKED, uuid=uuid, node=node,
                   detail=f"account locked: {lock.reason}", violation=False)


def check_rate(view: AccountView, limits: Limits, now: float, wall: float) -> Verdict | None:
    """``max_call_rate = N/W``: this call would be more than N new calls in the last W seconds
    (``view.creations`` holds the earlier attempts; one exactly W seconds old has left)."""
    rate = limits.max_call_rate
    if rate is None:
        return None
    creations = view.creations
    n = len(creations) + 1
    if n <= rate.count:  # fewer attempts kept than the limit: within it, whatever their age
        return None
    n = count_since(creations, now - rate.window) + 1
    if n <= rate.count:
        return None
    observed = f"{min(n, rate.count + 1)}/{format_duration(rate.window)}"
    return _violation(view, Rule.RATE, str(rate), observed)


def check_concurrency(view: AccountView, limits: Limits, now: float,
                      wall: float) -> Verdict | None:
    """``max_concurrent_calls = N``: this call would be call N+1 up at once."""
    cap = limits.max_concurrent_calls
    if cap is None or view.live + 1 <= cap:
        return None
    return _violation(view, Rule.CONCURRENCY, str(cap), str(view.live + 1))


def _violation(view: AccountView, rule: Rule, limit: str, observed: str) -> Verdict:
    uuid, node = _call(view)
    return Verdict(rule, clause_of(rule), limit=limit, observed=observed, uuid=uuid, node=node,
                   detail=f"{rule.value} {observed} over limit {limit}")


#: The admission rules, in order: the first verdict wins.
ADMISSION_RULES: tuple[Check, ...] = (
    check_lock_state, check_locked, check_caller_id, check_rate, check_concurrency,
    check_minutes, check_inbound_concurrency, check_short_calls, check_source_ips,
    check_distinct_destinations, check_sequential_destinations)

#: The rules that can refuse an account's NEXT call whatever it is (no fact of the call
#: needed): what :func:`next_call_blocked` runs.
NEXT_CALL_RULES: tuple[Check, ...] = (
    check_lock_state, check_locked, check_rate, check_concurrency, check_minutes,
    check_short_calls)

#: What a call adopted by a resync (found up, never seen starting) goes through: only the lock.
#: It is counted without limit checks (a resync never hangs up a call it adopts over a limit).
ADOPTION_RULES: tuple[Check, ...] = (check_locked,)


#: The ``Limits`` field each rule takes its threshold from: it can return a verdict only when
#: that field is set.  A rule not listed here always runs.
RULE_NEEDS: dict[Check, str] = {
    check_caller_id: "caller_id_allowed", check_rate: "max_call_rate",
    check_concurrency: "max_concurrent_calls", check_minutes: "max_minutes",
    check_inbound_concurrency: "max_inbound_concurrent_calls",
    check_short_calls: "max_short_calls", check_source_ips: "max_source_ips",
    check_distinct_destinations: "max_distinct_destinations",
    check_sequential_destinations: "max_sequential_destinations"}

_ON: dict[int, tuple[Limits, tuple[Check, ...]]] = {}


def admission_rules_on(limits: Limits) -> tuple[Check, ...]:
    """:data:`ADMISSION_RULES` without those ``limits`` turn off (they would return None),
    in their order; remembered per ``Limits`` object (a conf holds a few, reused for every
    call)."""
    entry = _ON.get(id(limits))
    if entry is not None and entry[0] is limits:
        return entry[1]
    rules = tuple(r for r in ADMISSION_RULES
                  if r not in RULE_NEEDS or getattr(limits, RULE_NEEDS[r]) is not None)
    if len(_ON) >= 4096:  # reloads make new Limits: forget the old ones
        _ON.clear()
    _ON[id(limits)] = (limits, rules)
    return rules


def first_verdict(rules: tuple[Check, ...], view: AccountView, limits: Limits, now: float,
                  wall: float) -> Verdict | None:
    """Run ``rules`` in order; the first verdict, or None."""
    for check in rules:
        verdict = check(view, limits, now, wall)
        if verdict is not None:
            return verdict
    return None


def admit(view: AccountView, limits: Limits, now: float, wall: float,
          warnings: list[Verdict] | None = None) -> Verdict | None:
    """Run :data:`ADMISSION_RULES` in order; the first verdict, or None: the call may go on.
    A violation of a rule listed in ``warn_only`` does not stop the call: it is appended to
    ``warnings`` and the next rules still run.
    (Once per new call, on the event path: the loop is written out, not delegated, over the
    rules these limits turn on.)"""
    for check in admission_rules_on(limits):
        verdict = check(view, limits, now, wall)
        if verdict is not None:
            if is_warning(verdict, limits):
                if warnings is not None:
                    warnings.append(verdict)
                continue
            return verdict
    return None


def is_warning(verdict: Verdict, limits: Limits) -> bool:
    """A violation of a rule listed in ``warn_only``: logged, audited, notified, no hangup."""
    warn = limits.warn_only
    return warn is not None and verdict.violation and verdict.rule.value in warn


def next_call_blocked(view: AccountView, limits: Limits, now: float,
                      wall: float) -> Verdict | None:
    """Whether the account's NEXT call (whatever its caller ID, source or number) would be
    refused at ``now``, and why: the first verdict of :data:`NEXT_CALL_RULES` that is not a
    ``warn_only`` warning, else None.  ``view`` is the account's (or, with a class's limits,
    the account's calls to that class) as the tracker builds it, with ``view.call`` None.
    Pre-answer admission state (mod_hash) is made of these answers."""
    for check in NEXT_CALL_RULES:
        verdict = check(view, limits, now, wall)
        if verdict is not None and not is_warning(verdict, limits):
            return verdict
    return None


def adopt(view: AccountView, limits: Limits, now: float, wall: float) -> Verdict | None:
    """Run :data:`ADOPTION_RULES`: a call a resync found up that was not seen starting."""
    return first_verdict(ADOPTION_RULES, view, limits, now, wall)


def counts_as_attempt(verdict: Verdict | None) -> bool:
    """Whether the call enters the account's call-rate window: every attempt does, except one
    refused because of a lock (it never reached the limits)."""
    return verdict is None or verdict.violation
