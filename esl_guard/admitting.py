"""The facts of a call while its admission is decided (:class:`Admitting`), read from its event
on first use.  A module of its own, outside those compiled with mypyc (setup.py): the class grows
attributes as they are read, which a compiled (native) class cannot.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esl_guard.callstate import Call, CallEventLike

_FACTS = frozenset({"destination", "caller_id", "source_ip", "context"})


class Admitting:
    """The :class:`~esl_guard.policy.CallFacts` of a call while its admission is decided: its
    uuid, node and answer time, and the facts of the event that made its account known,
    decoded on first use and then kept as plain attributes (a detector may read one several
    times).  Without an event (a resync), every fact is None."""

    def __init__(self, call: Call, ev: CallEventLike | None) -> None:
        self.uuid = call.uuid
        self.node = call.node
        self.answered = call.answered
        self.destination = call.destination
        self._ev = ev

    def __getattr__(self, name: str) -> str | None:
        if name not in _FACTS:
            raise AttributeError(name)
        value: str | None = getattr(self._ev, name, None)
        setattr(self, name, value)
        return value

    if TYPE_CHECKING:  # for the CallFacts protocol (set on first use by __getattr__)
        caller_id: str | None
        source_ip: str | None
        context: str | None
