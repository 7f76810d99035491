"""Duration timers: a wheel of 0.1 s buckets, each an intrusive ring of the calls whose deadline
falls in it.  A call leaves its ring in O(1) when it ends, so nothing is held for calls gone and
nothing is scanned: ``due`` visits only the buckets whose time has come.  Pure data structure: no
clock, no I/O (``now`` is an argument)."""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Generic, TypeVar

SLOTS_PER_SECOND = 10  # timers fire within 0.1 s (+ the tick) of their deadline


class TimerNode:
    """An element of a ring: the tracker's ``Call`` derives from it (no container entry per
    armed call)."""

    __slots__ = ("tprev", "tnext")

    def __init__(self) -> None:
        self.tprev: TimerNode | None = None
        self.tnext: TimerNode | None = None


N = TypeVar("N", bound=TimerNode)


def disarm(node: TimerNode) -> None:
    """Take ``node`` out of its ring, if it is in one (O(1))."""
    prev, after = node.tprev, node.tnext
    if prev is not None and after is not None:
        prev.tnext, after.tprev = after, prev
        node.tprev = node.tnext = None


class TimerWheel(Generic[N]):
    def __init__(self) -> None:
        self._buckets: dict[int, TimerNode] = {}  # slot -> the ring's sentinel head
        self._next_slot: int | None = None

    def arm(self, node: N, deadline: float) -> None:
        """(Re)arm ``node`` for ``deadline`` (same clock as ``due``'s ``now``)."""
        disarm(node)
        key = math.ceil(deadline * SLOTS_PER_SECOND - 1e-9)  # first slot at/after it
        head = self._buckets.get(key)
        if head is None:
            head = self._buckets[key] = TimerNode()
            head.tprev = head.tnext = head
        after = head.tnext
        assert after is not None
        node.tprev, node.tnext = head, after
        head.tnext = after.tprev = node
        if self._next_slot is None or key < self._next_slot:
            self._next_slot = key

    def due(self, now: float) -> Iterator[list[N]]:
        """The rings whose slot has come, oldest first, each detached from the wheel before it
        is yielded (handling one node may disarm others, or re-arm it for later)."""
        current = int(now * SLOTS_PER_SECOND)
        slot = self._next_slot
        if slot is None or slot > current:
            return
        buckets = self._buckets
        if current - slot > len(buckets):  # a long gap: visit only the slots that exist
            keys = sorted(k for k in buckets if k <= current)
        else:
            keys = [k for k in range(slot, current + 1) if k in buckets]
        for key in keys:
            head = buckets.pop(key)
            ring: list[N] = []
            node = head.tnext
            while node is not None and node is not head:
                ring.append(node)  # type: ignore[arg-type]  # only N are armed
                node.tprev, node = None, node.tnext
            for member in ring:
                member.tnext = None
            yield ring
        self._next_slot = min(buckets) if buckets else None

    def armed(self) -> int:
        """Nodes armed (walks every ring: for tests and tools)."""
        n = 0
        for head in self._buckets.values():
            node = head.tnext
            while node is not None and node is not head:
                n += 1
                node = node.tnext
        return n
