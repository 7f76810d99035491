"""Log lines for repeated refusals, summarised (issue 16, bug 5).

A locked account's callers keep dialling: one WARNING per refused call buries everything else
(175 lines in 50 s in one run).  The first refusal of an account is logged in full; the ones
that follow within ``period`` seconds are only counted, and when the period ends the count is
one line.  While refusals go on, that is one line per account per period.  Every refusal is
still in the audit trail: only the log is summarised.

Pure: the caller passes its monotonic clock ``now`` to every call.
"""
from __future__ import annotations

from dataclasses import dataclass

PERIOD = 60.0


@dataclass(frozen=True, slots=True)
class Summary:
    """``count`` refusals of ``account`` not logged one by one, from ``since`` (monotonic) for
    ``seconds``."""

    account: str
    count: int
    since: float
    seconds: float


class RefusalSummary:
    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        # account -> [start of its period, refusals counted and not logged]
        self._open: dict[str, list[float]] = {}

    def refused(self, account: str, now: float) -> bool:
        """A call of ``account`` was refused at ``now``: True when this one is logged in full
        (the first of a period), False when it is only counted."""
        current = self._open.get(account)
        if current is None or (now - current[0] >= self.period and not current[1]):
            self._open[account] = [now, 0]
            return True
        current[1] += 1  # a period that ended with a count: its summary (due) includes this
        return False

    def due(self, now: float) -> list[Summary]:
        """The periods that ended by ``now`` with refusals not logged, one summary each, in
        account order.  An account whose period ended with a count starts the next period
        at once (refusals going on: one line per period); one without is forgotten."""
        out: list[Summary] = []
        for account in sorted(self._open):
            start, count = self._open[account]
            if now - start < self.period:
                continue
            if count:
                out.append(Summary(account, int(count), start, now - start))
                self._open[account] = [now, 0]
            else:
                del self._open[account]
        return out

    def flush(self, now: float) -> list[Summary]:
        """At a stop: every count not logged yet, whether its period ended or not."""
        out = [Summary(account, int(count), start, now - start)
               for account, (start, count) in sorted(self._open.items()) if count]
        self._open.clear()
        return out

    def __len__(self) -> int:
        return len(self._open)
