"""Converters of conf values: text -> typed value, or ValueError whose text is the
"expected ..." part of the error line (supervisor ``datatypes.py`` style, range-checked)."""
from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable
from decimal import Decimal

from esl_guard.causes import HANGUP_CAUSES
from esl_guard.model import WARNABLE_RULES, Patterns, Rate, format_duration

# Each converter takes the stripped text of a value and returns the typed value, or raises
# ValueError whose text is the "expected ..." part of the error line.

_MAX_DURATION = 3650 * 86400.0
_DURATION_RE = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?|\.[0-9]{1,9})\s*(ms|s|m|h|d)?", re.IGNORECASE)
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600),
          "d": Decimal(86400)}
DURATION_EXPECTED = "expected a duration > 0 such as 90, 90s, 500ms, 15m, 4h or 1d"
RATE_EXPECTED = "expected N/DURATION with N >= 1, such as 60/1m or 3/60"
_WHOLE_RE = re.compile(r"[0-9]{1,15}")
NAME_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CLASS_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PREFIX_RE = re.compile(r"[0-9]{1,32}")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
OFF_WORDS = ("off", "none")


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


def whole(minimum: int) -> Callable[[str], int]:
    expected = f"expected a whole number >= {minimum}"

    def convert(text: str) -> int:
        if not _WHOLE_RE.fullmatch(text) or int(text) < minimum:
            raise ValueError(expected)
        return int(text)

    return convert


def boolean(text: str) -> bool:
    try:
        return _BOOLS[text.lower()]
    except KeyError:
        raise ValueError("expected true or false (also yes/no, on/off, 1/0)") from None


def choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    expected = "expected " + ", ".join(choices[:-1]) + " or " + choices[-1]

    def convert(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(expected)
        return text.upper() if upper else text.lower()

    return convert


def port_number(text: str) -> int:
    if not _WHOLE_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError("expected a port number 1-65535")
    return int(text)


def host_name(text: str) -> str:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _HOST_RE.fullmatch(bare) and ".." not in bare:
        return bare
    raise ValueError("expected a host name or IP address")


def listen_address(text: str) -> tuple[str, int]:
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
            host = host_name(host)
        except ValueError:
            raise ValueError(expected) from None
    try:
        return host, port_number(port)
    except ValueError:
        raise ValueError(expected) from None


def one_line(expected: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not text or not text.isprintable():
            raise ValueError(expected)
        return text

    return convert


def matching(regex: re.Pattern[str], expected: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not regex.fullmatch(text):
            raise ValueError(expected)
        return text

    return convert


def hangup_cause(text: str) -> str:
    name = text.upper()
    if name in HANGUP_CAUSES:
        return name
    close = difflib.get_close_matches(name, sorted(HANGUP_CAUSES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(
        "expected a FreeSWITCH hangup cause such as CALL_REJECTED or OUTGOING_CALL_BARRED" + hint
    )


def lock_duration(text: str) -> float | None:
    if text.lower() == "forever":
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("expected a duration > 0 such as 30m, 1h or 7d, or forever") from None


def factor(text: str) -> float:
    if not re.fullmatch(r"[0-9]{1,6}(?:\.[0-9]{1,6})?", text) or float(text) < 1:
        raise ValueError("expected a number >= 1 such as 1, 1.5 or 2")
    return float(text)


_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2")
_DB_EXPECTED = (
    "expected an SQLAlchemy URL such as sqlite:////var/lib/esl-guard/esl-guard.db or "
    "postgresql+psycopg2://USER:PASSWORD@HOST/DBNAME (sqlite or postgresql only)"
)


def db_url(text: str) -> str:
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


duration: Callable[[str], float] = parse_duration


def failover_time(text: str) -> float:
    """``[cluster] failover_after``: a duration of 1 s to 10 min (PostgreSQL's keepalives
    that end a vanished host's session count whole seconds)."""
    seconds = parse_duration(text)
    if not 1.0 <= seconds <= 600.0:
        raise ValueError("expected a duration from 1s to 10m such as 10s")
    return seconds


_PATTERN_RE = re.compile(r"[0-9A-Za-z+*?\[\]!#._@-]{1,64}")
_CONTEXT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def patterns(text: str) -> Patterns:
    """``+4420* 02079460000 anonymous``: shell-style caller ID patterns, space separated."""
    items = text.split()
    if not items or len(items) > 1000 or not all(_PATTERN_RE.fullmatch(p) for p in items):
        raise ValueError("expected one or more caller ID patterns such as +4420* or "
                         "02079460000 (digits, letters, + * ? [ ] ! # . _ @ -), space separated")
    return Patterns(tuple(dict.fromkeys(items)))


def contexts(text: str) -> frozenset[str]:
    """``public from-trunk``: dialplan context names, space separated."""
    items = text.split()
    if not items or not all(_CONTEXT_RE.fullmatch(c) for c in items):
        raise ValueError("expected one or more dialplan context names such as public, "
                         "space separated")
    return frozenset(items)


def rule_names(text: str) -> frozenset[str]:
    """``max_short_calls caller_id_allowed``: rules whose violations only warn."""
    items = text.split()
    wrong = [r for r in items if r not in WARNABLE_RULES]
    if not items or wrong:
        hint = ""
        if wrong and (close := difflib.get_close_matches(wrong[0], WARNABLE_RULES, n=1)):
            hint = f" (did you mean {close[0]}?)"
        raise ValueError("expected rule names from " + ", ".join(WARNABLE_RULES) + hint)
    return frozenset(items)


NOTIFY_EVENTS = ("lock", "unlock", "violation", "warn")


def webhook_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (credentials in it are allowed, never
    logged)."""
    from urllib.parse import urlsplit

    expected = "expected an http:// or https:// URL such as https://hooks.example.net/esl-guard"
    if not text.isprintable() or " " in text:
        raise ValueError(expected)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(expected)
    return text


def notify_events(text: str) -> frozenset[str]:
    items = text.split()
    if not items or any(e not in NOTIFY_EVENTS for e in items):
        raise ValueError("expected event kinds from " + ", ".join(NOTIFY_EVENTS))
    return frozenset(items)


def prefixes(text: str) -> tuple[str, ...]:
    """``1900 1976 44871``: dialled-number prefixes (digits only), space separated."""
    items = text.split()
    wrong = [p for p in items if not _PREFIX_RE.fullmatch(p)]
    if not items or wrong:
        hint = ""
        if wrong and wrong[0].startswith("+") and _PREFIX_RE.fullmatch(wrong[0][1:]):
            hint = f" (write {wrong[0][1:]}: a leading + of the dialled number is ignored)"
        raise ValueError("expected one or more prefixes of 1-32 digits such as 1900 44871, "
                         "space separated" + hint)
    dup = [p for p in dict.fromkeys(items) if items.count(p) > 1]
    if dup:
        raise ValueError(f"expected each prefix once ({dup[0]} is listed twice)")
    return tuple(items)
