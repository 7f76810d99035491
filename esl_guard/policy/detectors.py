"""Detectors: the clauses of the Acceptable Usage Policy beyond plain counts (issue 13).

Each is ``check_RULE(view, limits, now, wall) -> Verdict | None``, a pure function of the
account's recent calls (``view.recent``, a :class:`RecentCalls` the tracker owns and trims), the
facts of the call being decided (``view.call``) and ``now``; absent limit = off.  A fact the
call does not carry (a call adopted by a resync has no event) turns the detector off for it.

- mass calling: :func:`check_distinct_destinations`, :func:`check_short_calls` (a call's end:
  :func:`check_short_call_end`), :func:`check_sequential_destinations`;
- shared credentials: :func:`check_source_ips`;
- impersonation: :func:`check_caller_id`;
- hosting: :func:`check_inbound_concurrency`.

Short calls are only known when a call ends.  The call that ends as short call N+1 of the
window is recorded as the violation (it is already over: nothing to hang up); from then on,
while the window holds more than N short calls, the account's next calls are refused at
admission (like ``max_call_rate``).  Live calls are left alone: they have not been shown to be
short, and a false hangup is as bad as a missed one.  Repeated violations lock the account as
for every rule (``lock_after``), which ends its live calls.
"""
from __future__ import annotations

from collections.abc import Mapping

from esl_guard.model import Limits, Rate, Rule, clause_of, format_duration
from esl_guard.policy.verdict import AccountView, Verdict
from esl_guard.policy.windows import count_since
from esl_guard.safety import describe_account


class RecentCalls:
    """What the detectors remember of one account's recent calls (bounded; the tracker owns it,
    the rules only read it).  Times are monotonic.

    ``destinations`` / ``source_ips``: value -> time of the newest admitted call with it, oldest
    first, values older than the window trimmed (at most N + 1 kept).  ``last_destination`` and
    ``run``: the last dialled number and how many consecutive calls, it included, dialled
    numbers that each add one.  ``short_calls``: when the newest N + 1 short calls ended.
    ``last``: when any of it last changed (an idle account is forgotten a day after that).
    """

    __slots__ = ("destinations", "source_ips", "last_destination", "run", "short_calls", "last")

    def __init__(self) -> None:
        self.destinations: dict[str, float] = {}
        self.source_ips: dict[str, float] = {}
        self.last_destination: str | None = None
        self.run = 0
        self.short_calls: list[float] = []
        self.last = 0.0


def uses_recent(limits: Limits) -> bool:
    """Whether any detector that remembers recent calls is on (else no state is kept)."""
    return (limits.max_distinct_destinations is not None or limits.max_short_calls is not None
            or limits.max_sequential_destinations is not None
            or limits.max_source_ips is not None)


# ---------------------------------------------------------------- small pure helpers


def new_value_count(seen: Mapping[str, float], value: str, horizon: float) -> int | None:
    """How many distinct values the window ``(horizon, now]`` would hold with ``value``; None
    when ``value`` is already in it (nothing new)."""
    last = seen.get(value)
    if last is not None and last > horizon:
        return None
    return 1 + sum(1 for t in seen.values() if t > horizon)


def next_number(previous: str | None, number: str | None) -> bool:
    """``number`` is ``previous`` plus one, same length (it differs only in its last digits):
    ``+442079460001`` -> ``+442079460002``, ``0099`` -> ``0100``."""
    if not previous or not number or previous == number or len(previous) != len(number):
        return False
    step = ord(number[-1]) - ord(previous[-1])
    if step != 1 and step != -9:  # the last digit goes up by one (9 -> 0 carries)
        return False
    a, b = previous.removeprefix("+"), number.removeprefix("+")
    if len(a) != len(b) or not (a.isascii() and a.isdigit() and b.isascii() and b.isdigit()):
        return False
    return int(b) == int(a) + 1


def sequential_run(previous: str | None, run: int, number: str | None) -> int:
    """The length of the run of sequential numbers once ``number`` is dialled after
    ``previous`` (which ended a run of ``run``)."""
    if number is None:
        return 0
    return run + 1 if next_number(previous, number) else 1


def is_short(answered: float | None, ended: float, limits: Limits) -> bool:
    """A call that ended at ``ended`` is short: never answered, or up less than short_call."""
    return answered is None or ended - answered < limits.short_call


def is_inbound(context: str | None, limits: Limits) -> bool:
    """A call to the account: its A-leg's ``Caller-Context`` is one of ``inbound_contexts``."""
    contexts = limits.inbound_contexts
    return context is not None and contexts is not None and context in contexts


# ---------------------------------------------------------------- the rules


def _verdict(view: AccountView, rule: Rule, limit: str, observed: str, what: str) -> Verdict:
    call = view.call
    return Verdict(rule, clause_of(rule), limit=limit, observed=observed,
                   uuid=None if call is None else call.uuid,
                   node=None if call is None else call.node,
                   detail=f"{rule.value} {observed} over limit {limit}{what}")


def _windowed(rule: Rule, rate: Rate, n: int, view: AccountView, what: str) -> Verdict:
    return _verdict(view, rule, str(rate), f"{n}/{format_duration(rate.window)}", what)


def check_caller_id(view: AccountView, limits: Limits, now: float,
                    wall: float) -> Verdict | None:
    """``caller_id_allowed = PATTERN ...``: the call's caller ID matches none of them."""
    allowed = limits.caller_id_allowed
    call = view.call
    if allowed is None or call is None:
        return None
    caller_id = call.caller_id
    if caller_id is None or allowed.matches(caller_id):
        return None
    shown = describe_account(caller_id) if caller_id else "''"
    return _verdict(view, Rule.CALLER_ID, str(allowed), shown,
                    f" (caller ID {shown} not allowed)")


def check_inbound_concurrency(view: AccountView, limits: Limits, now: float,
                              wall: float) -> Verdict | None:
    """``max_inbound_concurrent_calls = N``: this call to the account would be call N+1 to it
    up at once (``view.inbound_live``: the account's live calls to it)."""
    cap = limits.max_inbound_concurrent_calls
    call = view.call
    if cap is None or call is None or not is_inbound(call.context, limits):
        return None
    n = view.inbound_live + 1
    if n <= cap:
        return None
    return _verdict(view, Rule.INBOUND_CONCURRENCY, str(cap), str(n), " (calls to the account)")


def _short_calls_over(view: AccountView, limits: Limits, now: float) -> int | None:
    rate = limits.max_short_calls
    recent = view.recent
    if rate is None or recent is None or len(recent.short_calls) <= rate.count:
        return None
    n = count_since(recent.short_calls, now - rate.window)
    return n if n > rate.count else None


def check_short_calls(view: AccountView, limits: Limits, now: float,
                      wall: float) -> Verdict | None:
    """``max_short_calls = N/W``, at admission: the window already holds more than N short
    calls, so the account's next call is refused until it holds N again.  Under ``warn_only``
    the warning is given once per short call, at its end, not for every new call."""
    n = _short_calls_over(view, limits, now)
    if n is None or (limits.warn_only and Rule.SHORT_CALLS.value in limits.warn_only):
        return None
    assert limits.max_short_calls is not None
    return _windowed(Rule.SHORT_CALLS, limits.max_short_calls, n, view,
                     " (short or unanswered calls; new calls refused)")


def check_short_call_end(view: AccountView, limits: Limits, now: float,
                         wall: float) -> Verdict | None:
    """``max_short_calls = N/W``, when ``view.call`` ended short (already in
    ``view.recent.short_calls``): it is short call N+1 or more of the window."""
    n = _short_calls_over(view, limits, now)
    if n is None:
        return None
    assert limits.max_short_calls is not None
    return _windowed(Rule.SHORT_CALLS, limits.max_short_calls, n, view,
                     f" (short_call {format_duration(limits.short_call)}; this call ended short)")


def check_source_ips(view: AccountView, limits: Limits, now: float,
                     wall: float) -> Verdict | None:
    """``max_source_ips = N/W``: this call comes from an address that would be the account's
    N+1th distinct source address in the window."""
    rate = limits.max_source_ips
    call = view.call
    if rate is None or call is None:
        return None
    ip = call.source_ip
    if not ip:
        return None
    seen = view.recent.source_ips if view.recent is not None else {}
    n = new_value_count(seen, ip, now - rate.window)
    if n is None or n <= rate.count:
        return None
    return _windowed(Rule.SOURCE_IPS, rate, n, view, f" (new address {describe_account(ip)})")


def check_distinct_destinations(view: AccountView, limits: Limits, now: float,
                                wall: float) -> Verdict | None:
    """``max_distinct_destinations = N/W``: this call dials a number that would be the N+1th
    different number of the window (redialling a number already in it is fine)."""
    rate = limits.max_distinct_destinations
    call = view.call
    if rate is None or call is None:
        return None
    number = call.destination
    if not number:
        return None
    seen = view.recent.destinations if view.recent is not None else {}
    n = new_value_count(seen, number, now - rate.window)
    if n is None or n <= rate.count:
        return None
    return _windowed(Rule.DISTINCT_DESTINATIONS, rate, n, view,
                     f" (new number {describe_account(number)})")


def check_sequential_destinations(view: AccountView, limits: Limits, now: float,
                                  wall: float) -> Verdict | None:
    """``max_sequential_destinations = N``: this call would make N+1 consecutive calls to
    numbers that each add one to the previous (a run of N is allowed)."""
    cap = limits.max_sequential_destinations
    call = view.call
    if cap is None or call is None:
        return None
    recent = view.recent
    previous, run = (recent.last_destination, recent.run) if recent is not None else (None, 0)
    n = sequential_run(previous, run, call.destination)
    if n <= cap:
        return None
    return _verdict(view, Rule.SEQUENTIAL_DESTINATIONS, str(cap), str(n),
                    f" (sequential numbers up to {describe_account(call.destination)})")
