"""Plain data shared by every layer: no I/O, no gevent, no SQLAlchemy.

Data flows one way: ESL frame -> CallEvent -> Tracker -> Action -> (ESL command, audit row, metric).
"""
from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Rate:
    """N events per sliding window of `window` seconds (``60/1m``)."""

    count: int
    window: float

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.window)}"


@dataclass(frozen=True)
class Patterns:
    """Shell-style patterns (``caller_id_allowed = +4420* 02079460000``): ``matches`` is true
    when the text matches at least one (case-sensitive, ``*`` ``?`` ``[...]``)."""

    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        regex = "|".join(fnmatch.translate(p) for p in self.patterns)
        object.__setattr__(self, "_regex", re.compile(regex).match)

    def matches(self, text: str) -> bool:
        return self._regex(text) is not None  # type: ignore[attr-defined,no-any-return]

    def __str__(self) -> str:
        return " ".join(self.patterns)


@dataclass(frozen=True, slots=True)
class Limits:
    """The effective thresholds for one account ([policy] merged with [account:X]).

    ``None`` means the limit is off.  ``lock_duration`` of ``None`` with ``lock_after`` set
    means a lock that never expires (``forever``).
    """

    max_concurrent_calls: int | None = None
    max_call_duration: float | None = None
    max_call_rate: Rate | None = None
    hangup_cause: str = "CALL_REJECTED"
    dry_run: bool = False
    lock_after: Rate | None = None
    lock_duration: float | None = 3600.0
    lock_escalation: float = 1.0
    lock_duration_max: float | None = None
    # Detectors (issue 13): absent = off.
    max_distinct_destinations: Rate | None = None
    max_short_calls: Rate | None = None
    short_call: float = 6.0
    max_sequential_destinations: int | None = None
    max_source_ips: Rate | None = None
    caller_id_allowed: Patterns | None = None
    max_inbound_concurrent_calls: int | None = None
    inbound_contexts: frozenset[str] | None = None
    warn_only: frozenset[str] | None = None  # rule names: logged, audited, notified, no hangup
    # Minute budget (issue 12): answered minutes (count) per sliding window.
    max_minutes: Rate | None = None


class Rule(str, enum.Enum):
    CONCURRENCY = "max_concurrent_calls"
    RATE = "max_call_rate"
    DURATION = "max_call_duration"
    DISTINCT_DESTINATIONS = "max_distinct_destinations"
    SHORT_CALLS = "max_short_calls"
    SEQUENTIAL_DESTINATIONS = "max_sequential_destinations"
    SOURCE_IPS = "max_source_ips"
    CALLER_ID = "caller_id_allowed"
    INBOUND_CONCURRENCY = "max_inbound_concurrent_calls"
    MINUTES = "max_minutes"
    LOCKED = "locked"
    LOCK_AFTER = "lock_after"
    MANUAL = "manual"


#: The clause of the Acceptable Usage Policy each rule enforces (issue 13).  A lock's own
#: hangups are ``locked``; a lock taken after repeated violations carries the clause of the
#: violation that triggered it (the tracker fills ``Action.clause``).
CLAUSES: dict[str, str] = {
    "max_concurrent_calls": "denial_of_service",
    "max_call_rate": "denial_of_service",
    "max_call_duration": "network_use",
    "max_distinct_destinations": "mass_calling",
    "max_short_calls": "mass_calling",
    "max_sequential_destinations": "mass_calling",
    "max_source_ips": "shared_credentials",
    "caller_id_allowed": "impersonation",
    "max_inbound_concurrent_calls": "hosting",
    "max_minutes": "network_use",
    "locked": "locked",
    "lock_after": "locked",
    "manual": "locked",
}

#: Every clause, in the order of the Acceptable Usage Policy (bounded metric label values).
CLAUSE_NAMES: tuple[str, ...] = ("mass_calling", "denial_of_service", "impersonation",
                                 "shared_credentials", "network_use", "hosting", "locked")

#: Rules whose violations ``warn_only`` may turn into warnings.
WARNABLE_RULES: tuple[str, ...] = (
    "max_concurrent_calls", "max_call_rate", "max_call_duration", "max_distinct_destinations",
    "max_short_calls", "max_sequential_destinations", "max_source_ips", "caller_id_allowed",
    "max_inbound_concurrent_calls", "max_minutes")


def clause_of(rule: Rule | str | None) -> str | None:
    """The policy clause of a rule (None for actions without a rule)."""
    if rule is None:
        return None
    return CLAUSES.get(rule.value if isinstance(rule, Rule) else rule)


class ActionKind(str, enum.Enum):
    VIOLATION = "violation"
    HANGUP = "hangup"
    LOCK = "lock"
    UNLOCK = "unlock"
    WARN = "warn"  # a violation of a rule listed in warn_only: no call is touched
    EXEMPT = "exempt"  # a call to an exempt destination class (emergency): never touched


@dataclass(frozen=True, slots=True)
class CallEvent:
    """The few facts esl-guard needs from one channel event.

    ``name`` is the ESL Event-Name.  ``account`` is the decoded value of the account variable,
    or None when the event does not carry it.  ``b_leg`` is True when the channel is the
    outbound leg of a bridge/originate (it never counts as a call of its own).
    """

    name: str
    node: str
    uuid: str
    account: str | None = None
    b_leg: bool = False
    other_leg: str | None = None
    destination: str | None = None  # Caller-Destination-Number, as dialled ("+" kept)
    caller_id: str | None = None    # Caller-Caller-ID-Number
    source_ip: str | None = None    # variable_sip_network_ip, else Caller-Network-Addr
    context: str | None = None      # Caller-Context (the dialplan context of the A-leg)


@dataclass(slots=True)
class Action:
    """A decision of the core, carried out by the adapters.

    ``kind`` HANGUP: kill ``uuid`` on ``node`` with ``cause``.  VIOLATION, LOCK and UNLOCK are
    recorded; LOCK/UNLOCK also push/remove the lock in every connected FreeSWITCH.
    ``dry_run`` actions are logged and audited but never change a call or a lock.
    """

    kind: ActionKind
    account: str
    rule: Rule | None = None
    node: str | None = None
    uuid: str | None = None
    cause: str | None = None
    limit: str | None = None
    observed: str | None = None
    dry_run: bool = False
    detail: str = ""
    until: float | None = None  # LOCK: wall-clock expiry (epoch seconds), None = forever
    clause: str | None = None   # None: clause_of(rule)
    extra: dict[str, object] = field(default_factory=dict)
    destination: str | None = None        # the call's dialled number (Caller-Destination-Number)
    destination_class: str | None = None  # its [destination:NAME] class, None: in no class


@dataclass(slots=True)
class Lock:
    """An account lock as the daemon holds it (the one lock record shared by every layer).

    ``until_wall``: wall-clock expiry (epoch seconds), None = forever.  ``origin``: auto (taken
    by ``lock_after``), manual (``esl-guard lock``).  ``pending``: decided here, not yet
    confirmed by the database.  ``since``: when it was taken (epoch seconds), if known.
    """

    account: str
    lock_id: str
    until_wall: float | None
    reason: str
    origin: str
    pending: bool = False
    since: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One live channel as reported by ``show channels as json`` (resync)."""

    uuid: str
    account: str | None
    b_leg: bool
    answered: bool
    age: float  # seconds since the channel was created
    answered_at: float | None = None  # epoch seconds of its answer (uuid_dump), if asked
    destination: str | None = None  # the dialled number (the list's "dest")
    parent: str | None = None  # a B-leg's call (its ``call_uuid``): the A-leg that created it


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the audit trail: a decision of the daemon or of an operator.

    The one spelling of an audit row: the daemon builds it from an :class:`Action`
    (:meth:`from_action`), the operator commands build it directly, the writer and the journal
    carry it as :meth:`to_op`, and the readers get it back with :meth:`from_mapping`.
    """

    event_id: str
    time: float  # epoch seconds, UTC
    account: str
    kind: str    # violation | hangup | lock | unlock | warn | exempt
    rule: str | None = None
    uuid: str | None = None
    node: str | None = None
    dry_run: bool = False
    limit: str | None = None
    observed: str | None = None
    detail: str = ""
    origin: str = "auto"  # auto | manual | expiry | system
    clause: str | None = None  # the policy clause of the rule (model.CLAUSES)
    destination: str | None = None        # the dialled number of the call decided
    destination_class: str | None = None  # its destination class (None: in no class)

    @classmethod
    def from_action(cls, action: Action, event_id: str, time: float,
                    origin: str = "auto") -> AuditRecord:
        return cls(event_id=event_id, time=time, account=action.account,
                   kind=action.kind.value, rule=action.rule.value if action.rule else None,
                   uuid=action.uuid, node=action.node, dry_run=action.dry_run,
                   limit=action.limit, observed=action.observed, detail=action.detail,
                   origin=origin, clause=action.clause or clause_of(action.rule),
                   destination=action.destination, destination_class=action.destination_class)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> AuditRecord:
        """From an audit op (journal, writer queue) or a reader's dict."""
        return cls(event_id=str(m["event_id"]), time=float(m["time"]), account=str(m["account"]),
                   kind=str(m["kind"]), rule=m.get("rule"), uuid=m.get("uuid"),
                   node=m.get("node"), dry_run=bool(m.get("dry_run", False)),
                   limit=m.get("limit"), observed=m.get("observed"),
                   detail=str(m.get("detail") or ""), origin=str(m.get("origin") or "auto"),
                   clause=m.get("clause") or clause_of(m.get("rule")),
                   destination=m.get("destination"),
                   destination_class=m.get("destination_class"))

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (``audit --json``)."""
        return {f: getattr(self, f) for f in AUDIT_FIELDS}

    def to_op(self) -> dict[str, Any]:
        """The writer/journal operation that stores this row."""
        op: dict[str, Any] = {"op": "audit"}
        op.update(self.as_dict())
        return op


AUDIT_FIELDS: tuple[str, ...] = ("event_id", "time", "account", "kind", "rule", "uuid", "node",
                                 "dry_run", "limit", "observed", "detail", "origin", "clause",
                                 "destination", "destination_class")


def format_duration(seconds: float) -> str:
    """Shortest exact human form: 90 -> '90s', 3600 -> '1h', 5400 -> '90m'."""
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s" if s == int(s) else f"{s:g}s"
