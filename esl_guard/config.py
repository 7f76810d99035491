"""The conf files an operator edits: parse, validate, merge, diff.

Every key is declared once in :data:`SETTINGS` (name, converter, default, description, the
sections it may appear in); validation, defaults and the example file are driven by that table.

A bad value is never replaced by a default: :func:`load_config` collects every problem of every
file and raises one :class:`ConfigError`, so a reload keeps the previous policy and the operator
sees all mistakes at once, each as ``FILE: [section] key = value: expected ...``.
"""
from __future__ import annotations

import configparser
import difflib
import ipaddress
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from esl_guard.causes import HANGUP_CAUSES
from esl_guard.model import Limits, Rate, format_duration
from esl_guard.safety import is_safe_account, redact_url, url_has_password

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_JOURNAL",
    "LIMIT_KEYS",
    "SETTINGS",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NodeConfig",
    "Setting",
    "describe_limits",
    "diff_config",
    "load_config",
    "parse_duration",
    "parse_rate",
]

DEFAULT_DB_URL = "sqlite:////var/lib/esl-guard/esl-guard.db"
DEFAULT_JOURNAL = "/var/lib/esl-guard/journal.jsonl"
DEFAULT_NODE = "default"


class ConfigError(Exception):
    """Every problem found in the conf files, one ``FILE: ...`` line each."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


# --------------------------------------------------------------------------- converters
# Each converter takes the stripped text of a value and returns the typed value, or raises
# ValueError whose text is the "expected ..." part of the error line.

_MAX_DURATION = 3650 * 86400.0
_DURATION_RE = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?|\.[0-9]{1,9})\s*(ms|s|m|h|d)?", re.IGNORECASE)
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600),
          "d": Decimal(86400)}
DURATION_EXPECTED = "expected a duration > 0 such as 90, 90s, 500ms, 15m, 4h or 1d"
RATE_EXPECTED = "expected N/DURATION with N >= 1, such as 60/1m or 3/60"
_WHOLE_RE = re.compile(r"[0-9]{1,15}")
_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
_OFF_WORDS = ("off", "none")


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``1.5s`` / ``500ms`` / ``15m`` / ``4h`` / ``1d`` -> seconds (> 0)."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(DURATION_EXPECTED)
    number, unit = m.groups()
    seconds = float(Decimal(number) * _UNITS[(unit or "s").lower()])
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(DURATION_EXPECTED)
    if seconds > _MAX_DURATION:
        raise ValueError(f"expected a duration of at most {format_duration(_MAX_DURATION)}")
    return seconds


def parse_rate(text: str) -> Rate:
    """``60/1m`` / ``3/60`` -> Rate(count, window seconds)."""
    count, sep, window = text.strip().partition("/")
    count = count.strip()
    if not sep or not _WHOLE_RE.fullmatch(count) or int(count) < 1:
        raise ValueError(RATE_EXPECTED)
    try:
        seconds = parse_duration(window)
    except ValueError:
        raise ValueError(RATE_EXPECTED) from None
    return Rate(int(count), seconds)


def _whole(minimum: int) -> Callable[[str], int]:
    expected = f"expected a whole number >= {minimum}"

    def convert(text: str) -> int:
        if not _WHOLE_RE.fullmatch(text) or int(text) < minimum:
            raise ValueError(expected)
        return int(text)

    return convert


def _bool(text: str) -> bool:
    try:
        return _BOOLS[text.lower()]
    except KeyError:
        raise ValueError("expected true or false (also yes/no, on/off, 1/0)") from None


def _choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    expected = "expected " + ", ".join(choices[:-1]) + " or " + choices[-1]

    def convert(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(expected)
        return text.upper() if upper else text.lower()

    return convert


def _port(text: str) -> int:
    if not _WHOLE_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError("expected a port number 1-65535")
    return int(text)


def _host(text: str) -> str:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _HOST_RE.fullmatch(bare) and ".." not in bare:
        return bare
    raise ValueError("expected a host name or IP address")


def _listen(text: str) -> tuple[str, int]:
    expected = "expected HOST:PORT such as 127.0.0.1:9464 or [::1]:9464"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(expected)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expected) from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(expected)
        try:
            host = _host(host)
        except ValueError:
            raise ValueError(expected) from None
    try:
        return host, _port(port)
    except ValueError:
        raise ValueError(expected) from None


def _line(expected: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not text or not text.isprintable():
            raise ValueError(expected)
        return text

    return convert


def _pattern(regex: re.Pattern[str], expected: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not regex.fullmatch(text):
            raise ValueError(expected)
        return text

    return convert


def _hangup_cause(text: str) -> str:
    name = text.upper()
    if name in HANGUP_CAUSES:
        return name
    close = difflib.get_close_matches(name, sorted(HANGUP_CAUSES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(
        "expected a FreeSWITCH hangup cause such as CALL_REJECTED or OUTGOING_CALL_BARRED" + hint
    )


def _lock_duration(text: str) -> float | None:
    if text.lower() == "forever":
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("expected a duration > 0 such as 30m, 1h or 7d, or forever") from None


def _factor(text: str) -> float:
    if not re.fullmatch(r"[0-9]{1,6}(?:\.[0-9]{1,6})?", text) or float(text) < 1:
        raise ValueError("expected a number >= 1 such as 1, 1.5 or 2")
    return float(text)


_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2")
_DB_EXPECTED = (
    "expected an SQLAlchemy URL such as sqlite:////var/lib/esl-guard/esl-guard.db or "
    "postgresql+psycopg2://USER:PASSWORD@HOST/DBNAME (sqlite or postgresql only)"
)


def _db_url(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep or not text.isprintable() or " " in text:
        raise ValueError(_DB_EXPECTED)
    scheme = scheme.lower()
    if scheme not in _DB_SCHEMES:
        raise ValueError(_DB_EXPECTED)
    if scheme == "sqlite" and rest and not rest.startswith("/"):
        raise ValueError(_DB_EXPECTED)
    if scheme != "sqlite" and not rest:
        raise ValueError(_DB_EXPECTED)
    return text


def sqlite_file(url: str) -> str | None:
    """The database file of an ``sqlite://`` URL, None for memory or another backend."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Setting:
    """One conf key.  ``default`` is conf-style text (converted like a value read from a
    file) or None for "absent/off".  ``sections`` are section kinds; ``account`` is the kind
    of ``[account:NAME]``.  ``off``: the words off/none turn it off (None).  ``secret``:
    never echoed in a message."""

    name: str
    convert: Callable[[str], Any]
    default: str | None
    doc: str
    sections: tuple[str, ...]
    off: bool = False
    secret: bool = False


_FS = ("freeswitch",)
_DB = ("database",)
_POL = ("policy",)
_LIM = ("policy", "account")
_dur: Callable[[str], float] = parse_duration

SETTINGS: Mapping[str, Setting] = MappingProxyType({s.name: s for s in (
    Setting("host", _host, "127.0.0.1", "address of the FreeSWITCH event socket", _FS),
    Setting("port", _port, "8021", "event socket TCP port", _FS),
    Setting("password", _line("expected a non-empty password on one line"), "ClueCon",
            "event socket password (or password_file / password_env)", _FS, secret=True),
    Setting("password_file", _line("expected a file path"), None,
            "file whose first line is the password", _FS),
    Setting("password_env", _pattern(_ENV_RE, "expected an environment variable name"), None,
            "environment variable holding the password", _FS),
    Setting("command_timeout", _dur, "5s", "give up on an ESL command after this", _FS),
    Setting("connect_timeout", _dur, "5s", "give up on a connection attempt after this", _FS),
    Setting("resync_interval", _dur, "60s", "reconcile with `show channels` this often", _FS),
    Setting("resync_timeout", _dur, "60s", "give up on a `show channels` answer after this", _FS),
    Setting("heartbeat_interval", _dur, "20s",
            "expected HEARTBEAT period; silence for 3x this means a dead connection", _FS),
    Setting("url", _db_url, DEFAULT_DB_URL, "SQLAlchemy URL (sqlite or postgresql)", _DB,
            secret=True),
    Setting("auto_migrate", _bool, "true", "upgrade the schema at start-up", _DB),
    Setting("fail_mode", _choice("open", "closed"), "open",
            "without the database: open = keep enforcing from memory, closed = refuse", _DB),
    Setting("journal", _line("expected a file path"), None,
            "audit rows spill here while the database is down", _DB),
    Setting("queue_max", _whole(1), "10000", "audit rows kept in memory before spilling", _DB),
    Setting("poll_interval", _dur, "2s", "poll the database for manual lock changes", _DB),
    Setting("account_variable",
            _pattern(_NAME_RE, "expected a channel variable name (letters, digits, _)"),
            "accountcode", "channel variable that names the account", _POL),
    Setting("lock_realm", _pattern(_NAME_RE, "expected a mod_hash realm (letters, digits, _)"),
            "esl_guard", "mod_hash realm where locks are published", _POL),
    Setting("max_concurrent_calls", _whole(0), None, "calls up at the same time", _LIM,
            off=True),
    Setting("max_call_duration", _dur, None, "hang up calls older than this", _LIM, off=True),
    Setting("max_call_rate", parse_rate, None, "new calls per sliding window", _LIM, off=True),
    Setting("hangup_cause", _hangup_cause, "CALL_REJECTED", "cause given to uuid_kill", _LIM),
    Setting("dry_run", _bool, "false", "log and audit, but never hang up or lock", _LIM),
    Setting("lock_after", parse_rate, None, "N violations per window lock the account", _LIM,
            off=True),
    Setting("lock_duration", _lock_duration, "1h", "how long a lock lasts (or forever)", _LIM),
    Setting("lock_escalation", _factor, "1", "each repeated lock lasts this factor longer",
            _LIM),
    Setting("lock_duration_max", _dur, None, "cap on escalated lock durations", _LIM,
            off=True),
    Setting("listen", _listen, "127.0.0.1:9464", "Prometheus exporter address", ("metrics",)),
    Setting("format", _choice("text", "json"), "text", "log line format", ("logging",)),
    Setting("level", _choice("debug", "info", "warning", "error", upper=True), "info",
            "log level", ("logging",)),
)})

LIMIT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Limits))
if not all(k in SETTINGS for k in LIMIT_KEYS):  # pragma: no cover - model.py drifted
    raise RuntimeError("every Limits field needs an entry in SETTINGS")

_PLAIN_SECTIONS = ("freeswitch", "database", "policy", "metrics", "logging")
_SECTION_HELP = (
    "unknown section (expected freeswitch, freeswitch:NAME, database, policy, account:NAME, "
    "metrics, logging)"
)
_PASSWORD_KEYS = ("password", "password_file", "password_env")
_PERM_HINT = "(chmod 600 or chmod 640 with group esl-guard)"


def _default(name: str) -> Any:
    s = SETTINGS[name]
    return None if s.default is None else s.convert(s.default)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = field(default="ClueCon", repr=False)
    command_timeout: float = 5.0
    connect_timeout: float = 5.0
    resync_interval: float = 60.0
    heartbeat_interval: float = 20.0
    resync_timeout: float = 60.0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, repr=False)
class DatabaseConfig:
    url: str = DEFAULT_DB_URL
    auto_migrate: bool = True
    fail_mode: str = "open"
    journal: str = DEFAULT_JOURNAL
    queue_max: int = 10000
    poll_interval: float = 2.0

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***``: the only form fit for a log."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"DatabaseConfig(url={self.safe_url!r}, auto_migrate={self.auto_migrate!r}, "
            f"fail_mode={self.fail_mode!r}, journal={self.journal!r}, "
            f"queue_max={self.queue_max!r}, poll_interval={self.poll_interval!r})"
        )


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class LoggingConfig:
    format: str = "text"
    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    nodes: tuple[NodeConfig, ...]
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    policy: Limits = field(default_factory=Limits)
    accounts: Mapping[str, Limits] = field(default_factory=dict)
    account_variable: str = "accountcode"
    lock_realm: str = "esl_guard"
    metrics: MetricsConfig | None = None
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # "[section] key" -> the file the effective value came from (absent = default).
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accounts", MappingProxyType(dict(self.accounts)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def limits_for(self, account: str) -> Limits:
        """The effective limits of ``account``: its own section, else [policy]."""
        return self.accounts.get(account, self.policy)


# --------------------------------------------------------------------------- loading


class _Parser(configparser.RawConfigParser):
    # A header is the whole (comment-stripped) line; "[policy] junk" is an error.
    SECTCRE = re.compile(r"\[\s*(?P<header>[^\]]*?)\s*\]\s*$")


@dataclass
class _Value:
    text: str
    value: Any
    file: str


def _show(text: str, setting: Setting | None) -> str:
    """A value as it may appear in an error line: secrets hidden, one printable line."""
    if setting is not None and setting.name == "url":
        text = redact_url(text)
    elif setting is not None and setting.secret:
        return "***"
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= 80 else text[:77] + "..."


def _group_ok(st: os.stat_result) -> bool:
    """Group read is fine when the group is root or esl-guard (the documented setup)."""
    if st.st_gid == 0:
        return True
    try:
        import grp

        return grp.getgrgid(st.st_gid).gr_name == "esl-guard"
    except (ImportError, KeyError):
        return False


def _readable_by_others(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return bool(st.st_mode & stat.S_IROTH) or bool(st.st_mode & stat.S_IRGRP and not _group_ok(st))


def _conf_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.conf")) + sorted((path / "conf.d").glob("*.conf"))
    return [path] + sorted((path.parent / "conf.d").glob("*.conf"))


class _Loader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.files: list[str] = []
        self.sections: dict[str, dict[str, _Value]] = {}
        self.section_file: dict[str, str] = {}
        self.broken = False  # a file could not be parsed: skip whole-config checks
        self.node_seen = False  # some [freeswitch...] header, even a rejected one

    def error(self, line: str) -> None:
        if line not in self.errors:
            self.errors.append(line)

    # -- one file

    def read_file(self, path: Path) -> None:
        name = str(path)
        self.files.append(name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.broken = True
            return self.error(f"{name}: cannot read: {exc.strerror or exc}")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.broken = True
            return self.error(
                f"{name}: byte {exc.start}: not UTF-8 text: expected a UTF-8 encoded file"
            )
        parser = _Parser(
            delimiters=("=",), comment_prefixes=("#", ";"), inline_comment_prefixes=("#", ";"),
            strict=True, empty_lines_in_values=False, interpolation=None,
            default_section="\0no-defaults",
        )
        try:
            parser.read_string(text, source=name)
        except configparser.DuplicateOptionError as exc:
            self.broken = True
            return self.error(f"{name}: line {exc.lineno}: [{exc.section}] {exc.option} "
                              "is set twice in this file: expected each key once per section")
        except configparser.DuplicateSectionError as exc:
            self.broken = True
            return self.error(f"{name}: line {exc.lineno}: [{exc.section}] appears twice in "
                              "this file: expected each section once per file")
        except configparser.MissingSectionHeaderError as exc:
            self.broken = True
            return self.error(f"{name}: line {exc.lineno}: {_show(exc.line.strip(), None)}: "
                              "expected a [section] header before the first key")
        except configparser.ParsingError as exc:
            # Non-fatal: configparser read the rest of the file; report every bad line.
            self.broken = True
            lines = text.split("\n")  # exc.errors holds repr()s of the lines: use ours
            for lineno, _ in exc.errors:
                line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
                self.error(f"{name}: line {lineno}: {_show(line.strip(), None)}: "
                           "expected key = value, a [section] header or a ; comment")
        except configparser.Error as exc:
            self.broken = True
            return self.error(f"{name}: {_show(str(exc), None)}")
        for section in parser.sections():
            self.read_section(name, section, parser.items(section, raw=True))

    def read_section(self, file: str, section: str, items: list[tuple[str, str]]) -> None:
        kind, sep, ident = section.partition(":")
        self.node_seen |= kind == "freeswitch"
        if not (section in _PLAIN_SECTIONS or (sep and kind in ("freeswitch", "account"))):
            return self.error(f"{file}: [{_show(section, None)}]: {_SECTION_HELP}")
        if kind == "account" and not is_safe_account(ident):
            return self.error(
                f"{file}: [{_show(section, None)}]: account name not allowed: expected 1-64 "
                "characters from A-Z a-z 0-9 _ . @ + - starting with a letter or digit"
            )
        if kind == "freeswitch" and ":" in section and not _NODE_NAME_RE.fullmatch(ident):
            return self.error(
                f"{file}: [{_show(section, None)}]: node name not allowed: expected 1-64 "
                "characters from A-Z a-z 0-9 _ . - starting with a letter or digit"
            )
        merged = self.sections.setdefault(section, {})
        self.section_file.setdefault(section, file)
        for key, text in items:
            value = self.read_value(file, section, kind, key, text)
            if value is not None:
                merged[key] = value
        if kind == "freeswitch" and "password" in dict(items) and _readable_by_others(file):
            self.warnings.append(f"{file}: readable by other users but holds the ESL "
                                 f"password {_PERM_HINT}")
        url = dict(items).get("url")
        if kind == "database" and url and url_has_password(url) and _readable_by_others(file):
            self.warnings.append(f"{file}: readable by other users but holds the database "
                                 f"password {_PERM_HINT}")

    def read_value(self, file: str, section: str, kind: str, key: str,
                   text: str) -> _Value | None:
        setting = SETTINGS.get(key)
        if setting is None or kind not in setting.sections:
            allowed = sorted(n for n, s in SETTINGS.items() if kind in s.sections)
            if setting is not None:
                hint = f"{key} belongs in [{setting.sections[0]}]"
            elif close := difflib.get_close_matches(key, allowed, n=1):
                hint = f"did you mean {close[0]}?"
            else:
                hint = "expected one of " + ", ".join(allowed)
            self.error(f"{file}: [{section}] {_show(key, None)}: unknown key ({hint})")
            return None
        where = f"{file}: [{section}] {key} = {_show(text, setting)}"
        if "\n" in text:
            self.error(f"{where}: expected a value on one line (an indented line continues "
                       "the previous value: remove the indentation)")
            return None
        if setting.off and text.lower() in _OFF_WORDS:
            return _Value(text, None, file)
        try:
            return _Value(text, setting.convert(text), file)
        except ValueError as exc:
            self.error(f"{where}: {exc}")
            return None

    # -- the merged result

    def get(self, section: str, key: str) -> Any:
        v = self.sections.get(section, {}).get(key)
        return _default(key) if v is None else v.value

    def node(self, section: str) -> NodeConfig | None:
        values = self.sections[section]
        given = [k for k in _PASSWORD_KEYS if k in values]
        if len(given) > 1:
            self.error(f"{values[given[-1]].file}: [{section}] {', '.join(given)}: expected at "
                       "most one of password, password_file, password_env")
            return None
        password = self.password(section, values)
        if password is None:
            return None
        return NodeConfig(
            name=section.partition(":")[2] or DEFAULT_NODE,
            host=self.get(section, "host"), port=self.get(section, "port"), password=password,
            command_timeout=self.get(section, "command_timeout"),
            connect_timeout=self.get(section, "connect_timeout"),
            resync_interval=self.get(section, "resync_interval"),
            heartbeat_interval=self.get(section, "heartbeat_interval"),
            resync_timeout=self.get(section, "resync_timeout"),
        )

    def password(self, section: str, values: Mapping[str, _Value]) -> str | None:
        if "password_env" in values:
            v = values["password_env"]
            secret = self.environ.get(v.value)
            if not secret:
                self.error(f"{v.file}: [{section}] password_env = {v.value}: expected the "
                           f"environment variable {v.value} to be set and not empty")
                return None
            if not secret.isprintable():
                self.error(f"{v.file}: [{section}] password_env = {v.value}: expected the "
                           f"environment variable {v.value} to hold one printable line")
                return None
            return secret
        if "password_file" in values:
            v = values["password_file"]
            path = Path(v.file).parent / v.value  # relative to the conf file naming it
            where = f"{v.file}: [{section}] password_file = {_show(v.text, None)}"
            try:
                first = path.read_bytes().decode("utf-8-sig").splitlines()[:1]
            except OSError as exc:
                self.error(f"{where}: expected a readable file ({exc.strerror or exc})")
                return None
            except UnicodeDecodeError:
                self.error(f"{where}: expected a UTF-8 text file")
                return None
            secret = first[0].strip() if first else ""
            if not secret or not secret.isprintable():
                self.error(f"{where}: expected the password on the first line")
                return None
            if _readable_by_others(str(path)):
                self.warnings.append(f"{path}: readable by other users but holds the ESL "
                                     f"password {_PERM_HINT}")
            return secret
        return str(self.get(section, "password"))

    def build(self, main: str) -> Config | None:
        node_sections = [s for s in self.sections if s.partition(":")[0] == "freeswitch"]
        if "freeswitch" in self.sections and "freeswitch:default" in self.sections:
            self.error(f"{self.section_file['freeswitch:default']}: [freeswitch:default]: "
                       "expected either [freeswitch] or [freeswitch:default], not both")
        if not self.node_seen and not self.broken:
            self.error(f"{main}: no [freeswitch] section: expected at least one FreeSWITCH node")
        nodes: list[NodeConfig] = []
        seen: dict[tuple[str, int], str] = {}
        for section in node_sections:
            node = self.node(section)
            if node is None:
                continue
            other = seen.setdefault((node.host, node.port), section)
            if other != section:
                self.error(f"{self.section_file[section]}: [{section}]: {node.address} is "
                           f"already [{other}]: expected one section per FreeSWITCH")
            nodes.append(node)

        url = self.get("database", "url")
        db_file = sqlite_file(url)
        journal = self.get("database", "journal") or (
            os.path.join(os.path.dirname(db_file) or ".", "journal.jsonl") if db_file
            else DEFAULT_JOURNAL)
        database = DatabaseConfig(
            url=url, auto_migrate=self.get("database", "auto_migrate"),
            fail_mode=self.get("database", "fail_mode"), journal=journal,
            queue_max=self.get("database", "queue_max"),
            poll_interval=self.get("database", "poll_interval"),
        )
        policy = Limits(**{k: self.get("policy", k) for k in LIMIT_KEYS})
        accounts = {
            section.partition(":")[2]: replace(
                policy, **{k: v.value for k, v in values.items() if k in LIMIT_KEYS})
            for section, values in self.sections.items() if section.startswith("account:")
        }
        metrics = None
        if "metrics" in self.sections:
            host, port = self.get("metrics", "listen")
            metrics = MetricsConfig(host=host, port=port)
        if self.errors:
            return None
        return Config(
            nodes=tuple(nodes), database=database, policy=policy, accounts=accounts,
            account_variable=self.get("policy", "account_variable"),
            lock_realm=self.get("policy", "lock_realm"), metrics=metrics,
            logging=LoggingConfig(format=self.get("logging", "format"),
                                  level=self.get("logging", "level")),
            files=tuple(self.files), warnings=tuple(dict.fromkeys(self.warnings)),
            sources={f"[{s}] {k}": v.file for s, vals in self.sections.items()
                     for k, v in vals.items()},
        )


def load_config(path: str | os.PathLike[str],
                environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` and the ``conf.d/*.conf`` beside it (or ``path/*.conf`` then
    ``path/conf.d/*.conf`` for a directory), in that order; later files override earlier
    ones key by key.  ``environ`` (default ``os.environ``) resolves ``password_env``.

    Raises ConfigError listing every problem; never anything else for bad input.
    """
    main = Path(path)
    loader = _Loader(os.environ if environ is None else environ)
    if not main.exists():
        raise ConfigError([f"{main}: cannot read: No such file or directory"])
    files = _conf_files(main)
    if not files:
        raise ConfigError([f"{main}: no *.conf file in this directory: expected esl-guard.conf"])
    for file in files:
        loader.read_file(file)
    config = loader.build(str(main))
    if config is None or loader.errors:
        raise ConfigError(loader.errors)
    return config


# --------------------------------------------------------------------------- reporting


def _fmt(value: Any, name: str) -> str:
    if value is None:
        return "forever" if name == "lock_duration" else "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Rate):
        return str(value)
    if isinstance(value, float) and SETTINGS[name].convert in (_dur, _lock_duration):
        return format_duration(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_limits(limits: Limits) -> dict[str, str]:
    """Each limit as conf text (``"off"`` when off, ``"forever"`` for an endless lock)."""
    return {name: _fmt(getattr(limits, name), name) for name in LIMIT_KEYS}


def _changes(prefix: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return [f"{prefix} {k}: {old[k]} -> {new[k]}" for k in old if old[k] != new.get(k, old[k])]


def _node_fields(node: NodeConfig) -> dict[str, str]:
    return {f.name: _fmt(getattr(node, f.name), f.name) for f in fields(node)
            if f.name not in ("name", "password")}


def diff_config(old: Config, new: Config) -> list[str]:
    """Human lines describing what a reload changes.  Never shows a password."""
    lines: list[str] = []
    old_nodes = {n.name: n for n in old.nodes}
    new_nodes = {n.name: n for n in new.nodes}
    for name, node in new_nodes.items():
        before = old_nodes.get(name)
        section = "[freeswitch]" if name == DEFAULT_NODE else f"[freeswitch:{name}]"
        if before is None:
            lines.append(f"node {name} added ({node.address})")
            continue
        lines += _changes(section, _node_fields(before), _node_fields(node))
        if before.password != node.password:
            lines.append(f"{section} password changed")
    lines += [f"node {name} removed" for name in old_nodes if name not in new_nodes]

    db_old, db_new = old.database, new.database
    if db_old.safe_url != db_new.safe_url:
        lines.append(f"[database] url: {db_old.safe_url} -> {db_new.safe_url}")
    elif db_old.url != db_new.url:
        lines.append("[database] url: password changed")
    lines += _changes("[database]", {k: _fmt(getattr(db_old, k), k) for k in _DB_FIELDS},
                      {k: _fmt(getattr(db_new, k), k) for k in _DB_FIELDS})

    lines += _changes("[policy]", {"account_variable": old.account_variable,
                                   "lock_realm": old.lock_realm},
                      {"account_variable": new.account_variable, "lock_realm": new.lock_realm})
    old_policy, new_policy = describe_limits(old.policy), describe_limits(new.policy)
    lines += _changes("[policy]", old_policy, new_policy)

    for account in new.accounts:
        if account not in old.accounts:
            lines.append(f"account {account} added")
            continue
        was = describe_limits(old.accounts[account])
        now = describe_limits(new.accounts[account])
        # A change that only follows [policy] was already reported there.
        lines += [
            f"[account:{account}] {k}: {was[k]} -> {now[k]}" for k in LIMIT_KEYS
            if was[k] != now[k] and (was[k] != old_policy[k] or now[k] != new_policy[k])
        ]
    lines += [f"account {a} removed" for a in old.accounts if a not in new.accounts]

    def listen(m: MetricsConfig | None) -> str:
        return "off" if m is None else (f"[{m.host}]:{m.port}" if ":" in m.host
                                        else f"{m.host}:{m.port}")

    if listen(old.metrics) != listen(new.metrics):
        lines.append(f"[metrics] listen: {listen(old.metrics)} -> {listen(new.metrics)}")
    lines += _changes("[logging]", {"format": old.logging.format, "level": old.logging.level},
                      {"format": new.logging.format, "level": new.logging.level})
    return lines


_DB_FIELDS = ("auto_migrate", "fail_mode", "journal", "queue_max", "poll_interval")
