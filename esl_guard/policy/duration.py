"""``max_call_duration``: how long an answered call may last."""
from __future__ import annotations

from esl_guard.model import Limits, Rule, clause_of, format_duration
from esl_guard.policy.verdict import AccountView, Verdict


def duration_deadline(answered: float | None, limits: Limits) -> float | None:
    """When a call answered at ``answered`` (monotonic) reaches ``max_call_duration``; None when
    it is not answered or the limit is off."""
    limit = limits.max_call_duration
    if answered is None or limit is None:
        return None
    return answered + limit


def check_duration(view: AccountView, limits: Limits, now: float, wall: float) -> Verdict | None:
    """``view.call`` has been up (since its answer) for ``max_call_duration`` or longer."""
    call = view.call
    if call is None:
        return None
    deadline = duration_deadline(call.answered, limits)
    if deadline is None or deadline > now:
        return None
    assert call.answered is not None and limits.max_call_duration is not None
    limit = format_duration(limits.max_call_duration)
    observed = format_duration(round(now - call.answered, 1))
    return Verdict(Rule.DURATION, clause_of(Rule.DURATION), limit=limit, observed=observed,
                   uuid=call.uuid, node=call.node,
                   detail=f"{Rule.DURATION.value} {observed} over limit {limit}")
