"""The settings table, the ONE source of every conf key and its default, and the typed results
(:class:`Config` and its parts) whose defaults come from it.

Each :class:`Setting` declares its name, the sections it may appear in, its converter, the kind
of value (for docs), its default (conf text, converted like a value read from a file) and a
one-line description: validation, defaults, the example conf and the settings reference are
all driven by :data:`SETTINGS`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from esl_guard.config.converters import (
    ENV_RE,
    NAME_RE,
    boolean,
    choice,
    contexts,
    db_url,
    duration,
    factor,
    failover_time,
    hangup_cause,
    host_name,
    listen_address,
    lock_duration,
    matching,
    notify_events,
    one_line,
    parse_rate,
    patterns,
    port_number,
    prefixes,
    rule_names,
    webhook_url,
    whole,
)
from esl_guard.model import Limits
from esl_guard.policy.destinations import Destinations
from esl_guard.safety import redact_url

DEFAULT_DB_URL = "sqlite:////var/lib/esl-guard/esl-guard.db"
DEFAULT_JOURNAL = "/var/lib/esl-guard/journal.jsonl"
DEFAULT_NODE = "default"



@dataclass(frozen=True)
class Setting:
    """One conf key.  ``default`` is conf-style text (converted like a value read from a
    file) or None for "absent/off".  ``sections`` are the section kinds it may appear in, the
    first being where it is documented; ``account`` is the kind of ``[account:NAME]``.
    ``kind``: the kind of value, for docs.  ``off``: the words off/none turn it off (None).
    ``secret``: never echoed in a message."""

    name: str
    convert: Callable[[str], Any]
    default: str | None
    doc: str
    sections: tuple[str, ...]
    kind: str = "text"
    off: bool = False
    secret: bool = False

    @property
    def section(self) -> str:
        """The section where the key is documented (``[policy]`` for account limits)."""
        return self.sections[0]


_FS = ("freeswitch",)
_DB = ("database",)
_POL = ("policy",)
_LIM = ("policy", "account")
#: Limits that may also be set per destination class (issue 12: [destination:NAME], and
#: CLASS.KEY in [account:X]); the detectors of issue 13 among them.
_CLS = ("policy", "account", "destination")
_DET = _CLS
_DST = ("destination",)
_DUR = "duration"

SETTINGS: Mapping[str, Setting] = MappingProxyType({s.name: s for s in (
    Setting("host", host_name, "127.0.0.1", "address of the FreeSWITCH event socket", _FS,
            kind="host"),
    Setting("port", port_number, "8021", "event socket TCP port", _FS, kind="port"),
    Setting("password", one_line("expected a non-empty password on one line"), "ClueCon",
            "event socket password (or password_file / password_env)", _FS, secret=True),
    Setting("password_file", one_line("expected a file path"), None,
            "file whose first line is the password", _FS, kind="path"),
    Setting("password_env", matching(ENV_RE, "expected an environment variable name"), None,
            "environment variable holding the password", _FS, kind="name"),
    Setting("command_timeout", duration, "5s", "give up on an ESL command after this", _FS,
            kind=_DUR),
    Setting("connect_timeout", duration, "5s", "give up on a connection attempt after this",
            _FS, kind=_DUR),
    Setting("resync_interval", duration, "60s", "reconcile with `show channels` this often",
            _FS, kind=_DUR),
    Setting("resync_timeout", duration, "60s", "give up on a `show channels` answer after this",
            _FS, kind=_DUR),
    Setting("node_lost_after", duration, "60s",
            "a node unreachable this long is lost: its calls stop counting until it is back",
            _FS, kind=_DUR),
    Setting("heartbeat_interval", duration, "20s",
            "expected HEARTBEAT period; silence for 3x this means a dead connection", _FS,
            kind=_DUR),
    Setting("url", db_url, DEFAULT_DB_URL, "SQLAlchemy URL (sqlite or postgresql)", _DB,
            kind="url", secret=True),
    Setting("auto_migrate", boolean, "true", "upgrade the schema at start-up", _DB,
            kind="boolean"),
    Setting("fail_mode", choice("open", "closed"), "open",
            "the lock state cannot be loaded at start (database down): open = enforce the "
            "limits and the locks known from the journal, closed = refuse every new call until "
            "it is known; the daemon starts either way", _DB,
            kind="open|closed"),
    Setting("journal", one_line("expected a file path"), None,
            "audit rows spill here while the database is down (default: journal.jsonl beside "
            "an SQLite database)", _DB, kind="path"),
    Setting("queue_max", whole(1), "10000", "audit rows kept in memory before spilling", _DB,
            kind="integer"),
    Setting("poll_interval", duration, "2s", "poll the database for manual lock changes", _DB,
            kind=_DUR),
    Setting("audit_retention", duration, "90d",
            "audit rows older than this are deleted, hourly, by the daemon's database writer "
            "(off: kept forever)", _DB, kind=_DUR, off=True),
    Setting("account_variable",
            matching(NAME_RE, "expected a channel variable name (letters, digits, _)"),
            "accountcode", "channel variable that names the account", _POL, kind="name"),
    Setting("lock_realm", matching(NAME_RE, "expected a mod_hash realm (letters, digits, _)"),
            "esl_guard", "mod_hash realm where locks are published", _POL, kind="name"),
    Setting("max_concurrent_calls", whole(0), None, "calls up at the same time", _CLS,
            kind="integer", off=True),
    Setting("max_call_duration", duration, None, "hang up calls older than this", _CLS,
            kind=_DUR, off=True),
    Setting("max_call_rate", parse_rate, None, "new calls per sliding window", _CLS,
            kind="rate", off=True),
    Setting("max_minutes", parse_rate, None,
            "answered minutes per sliding window, live calls included (N/DURATION)", _CLS,
            kind="rate", off=True),
    Setting("hangup_cause", hangup_cause, "CALL_REJECTED", "cause given to uuid_kill", _LIM,
            kind="hangup cause"),
    Setting("dry_run", boolean, "false", "log and audit, but never hang up or lock", _LIM,
            kind="boolean"),
    Setting("lock_after", parse_rate, None, "N violations per window lock the account", _LIM,
            kind="rate", off=True),
    Setting("lock_duration", lock_duration, "1h", "how long a lock lasts (or forever)", _LIM,
            kind="duration|forever"),
    Setting("lock_escalation", factor, "1", "each repeated lock lasts this factor longer",
            _LIM, kind="number"),
    Setting("lock_duration_max", duration, None, "cap on escalated lock durations", _LIM,
            kind=_DUR, off=True),
    Setting("max_distinct_destinations", parse_rate, None,
            "different dialled numbers per sliding window (mass calling)", _DET, kind="rate",
            off=True),
    Setting("max_short_calls", parse_rate, None,
            "calls shorter than short_call, or never answered, per sliding window", _DET,
            kind="rate", off=True),
    Setting("short_call", duration, "6s", "an answered call shorter than this is short", _DET,
            kind=_DUR),
    Setting("max_sequential_destinations", whole(1), None,
            "consecutive calls to numbers that each add one (sequential dialling)", _DET,
            kind="integer", off=True),
    Setting("max_source_ips", parse_rate, None,
            "distinct source IP addresses per sliding window (shared credentials)", _DET,
            kind="rate", off=True),
    Setting("caller_id_allowed", patterns, None,
            "caller IDs allowed, shell-style patterns such as +4420* (impersonation)", _DET,
            kind="patterns", off=True),
    Setting("max_inbound_concurrent_calls", whole(0), None,
            "calls to the account (A-legs in inbound_contexts) up at once (hosting)", _DET,
            kind="integer", off=True),
    Setting("inbound_contexts", contexts, None,
            "dialplan contexts (Caller-Context) of calls to an account", _POL, kind="names"),
    Setting("warn_only", rule_names, None,
            "rules whose violations are logged, audited and notified, no call touched", _CLS,
            kind="rules", off=True),
    Setting("prefixes", prefixes, None,
            "dialled-number prefixes of the class (digits; a leading + is ignored; the "
            "longest match wins)", _DST, kind="digits"),
    Setting("exempt", boolean, "false",
            "never refuse, hang up or count calls to this class (emergency numbers; each "
            "prefix must then be the whole number)", _DST, kind="boolean"),
    Setting("webhook", webhook_url, None, "POST one JSON object per event to this URL",
            ("notify",), kind="url", secret=True),
    Setting("secret", one_line("expected a non-empty secret on one line"), None,
            "HMAC-SHA256 key: X-ESL-Guard-Signature: sha256=<hex> of the body", ("notify",),
            secret=True),
    Setting("events", notify_events, "lock unlock", "event kinds sent (lock unlock violation "
            "warn)", ("notify",), kind="kinds"),
    Setting("min_interval", duration, "10m",
            "at most one notification per account, rule and kind per interval", ("notify",),
            kind=_DUR),
    Setting("listen", listen_address, "127.0.0.1:9464", "Prometheus exporter address",
            ("metrics",), kind="host:port"),
    Setting("failover_after", failover_time, "10s",
            "a standby takes over this soon after the active instance is gone (PostgreSQL)",
            ("cluster",), kind=_DUR),
    Setting("format", choice("text", "json"), "text", "log line format", ("logging",),
            kind="text|json"),
    Setting("level", choice("debug", "info", "warning", "error", upper=True), "info",
            "log level", ("logging",), kind="debug|info|warning|error"),
)})

LIMIT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Limits))
if not all(k in SETTINGS for k in LIMIT_KEYS):  # pragma: no cover - model.py drifted
    raise RuntimeError("every Limits field needs an entry in SETTINGS")

PLAIN_SECTIONS = ("freeswitch", "database", "policy", "notify", "metrics", "cluster", "logging")
SECTION_HELP = (
    "unknown section (expected freeswitch, freeswitch:NAME, database, policy, account:NAME, "
    "destination:NAME, notify, metrics, cluster, logging)"
)
PASSWORD_KEYS = ("password", "password_file", "password_env")
PERM_HINT = "(chmod 600 or chmod 640 with group esl-guard)"


def default_value(name: str) -> Any:
    """The typed default of a key, converted from the table's text (None: absent/off)."""
    s = SETTINGS[name]
    return None if s.default is None else s.convert(s.default)


def settings_in(kind: str) -> list[Setting]:
    """The keys a section kind (``freeswitch``, ``database``, ``policy``, ``account``,
    ``metrics``, ``logging``) accepts, in table order: for the example conf and the docs."""
    return [s for s in SETTINGS.values() if kind in s.sections]


# model.Limits cannot import the table (imports point the other way): check they agree.
_LIMITS = Limits()
if any(getattr(_LIMITS, k) != default_value(k) for k in LIMIT_KEYS):  # pragma: no cover
    raise RuntimeError("model.Limits defaults differ from the SETTINGS table")

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = default_value("host")
    port: int = default_value("port")
    password: str = field(default=default_value("password"), repr=False)
    command_timeout: float = default_value("command_timeout")
    connect_timeout: float = default_value("connect_timeout")
    resync_interval: float = default_value("resync_interval")
    heartbeat_interval: float = default_value("heartbeat_interval")
    resync_timeout: float = default_value("resync_timeout")
    node_lost_after: float = default_value("node_lost_after")

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, repr=False)
class DatabaseConfig:
    url: str = default_value("url")
    auto_migrate: bool = default_value("auto_migrate")
    fail_mode: str = default_value("fail_mode")
    journal: str = DEFAULT_JOURNAL
    queue_max: int = default_value("queue_max")
    poll_interval: float = default_value("poll_interval")
    audit_retention: float | None = default_value("audit_retention")

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***``: the only form fit for a log."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"DatabaseConfig(url={self.safe_url!r}, auto_migrate={self.auto_migrate!r}, "
            f"fail_mode={self.fail_mode!r}, journal={self.journal!r}, "
            f"queue_max={self.queue_max!r}, poll_interval={self.poll_interval!r}, "
            f"audit_retention={self.audit_retention!r})"
        )


@dataclass(frozen=True)
class MetricsConfig:
    host: str = default_value("listen")[0]
    port: int = default_value("listen")[1]


@dataclass(frozen=True, repr=False)
class NotifyConfig:
    """``[notify]``: the operator's webhook (issue 13).  ``webhook`` may hold credentials:
    never log it, use :attr:`safe_url`."""

    webhook: str
    secret: str | None = None
    events: frozenset[str] = default_value("events")
    min_interval: float = default_value("min_interval")

    @property
    def safe_url(self) -> str:
        """Only ``scheme://host[:port]``: webhook paths and queries often carry tokens."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.webhook)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") + "/..."

    def __repr__(self) -> str:
        return (f"NotifyConfig(webhook={self.safe_url!r}, secret={'***' if self.secret else None}"
                f", events={sorted(self.events)!r}, min_interval={self.min_interval!r})")


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]`` (issue 14): several instances on one PostgreSQL database."""

    failover_after: float = default_value("failover_after")


@dataclass(frozen=True)
class LoggingConfig:
    format: str = default_value("format")
    level: str = default_value("level")


@dataclass(frozen=True)
class Config:
    nodes: tuple[NodeConfig, ...]
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    policy: Limits = field(default_factory=Limits)
    accounts: Mapping[str, Limits] = field(default_factory=dict)
    account_variable: str = default_value("account_variable")
    lock_realm: str = default_value("lock_realm")
    metrics: MetricsConfig | None = None
    notify: NotifyConfig | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # "[section] key" -> the file the effective value came from (absent = default).
    sources: Mapping[str, str] = field(default_factory=dict)
    # [destination:NAME] classes and the accounts' CLASS.KEY limits (issue 12).
    destinations: Destinations = field(default_factory=Destinations)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accounts", MappingProxyType(dict(self.accounts)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def limits_for(self, account: str) -> Limits:
        """The effective limits of ``account``: its own section, else [policy]."""
        return self.accounts.get(account, self.policy)
