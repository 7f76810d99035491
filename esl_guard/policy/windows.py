"""Sliding-window arithmetic on sorted time lists.  Pure: the state holder owns the lists and
trims them (see ``Tracker``); these only read them."""
from __future__ import annotations

import bisect
from collections.abc import Sequence


def count_since(times: Sequence[float], horizon: float) -> int:
    """How many of ``times`` (sorted, oldest first) are strictly after ``horizon``.

    A sliding window of ``w`` seconds at ``now`` holds the times in ``(now - w, now]``: an event
    exactly ``w`` seconds old has left the window.
    """
    if not times or times[0] > horizon:
        return len(times)
    return len(times) - bisect.bisect_right(times, horizon)


def count_from(times: Sequence[float], start: float) -> int:
    """How many of ``times`` (sorted, oldest first) are at or after ``start``."""
    return len(times) - bisect.bisect_left(times, start)


def in_window(times: Sequence[float], now: float, window: float) -> int:
    """How many of ``times`` fall in the sliding window of ``window`` seconds ending at ``now``."""
    return count_since(times, now - window)
