"""Logging to stderr (journald picks it up), as text or one JSON object per line.

Times are ISO 8601 with their zone in both formats: local time with its offset in text lines,
UTC (``...Z``) in JSON.  In JSON, the facts of a line are fields of the object, so journald and
log shippers can index them:
- anything passed with ``extra={...}`` (``log.warning("...", extra={"account": a})``);
- the ``key=value`` pairs of a decision line as the service writes them today
  (``hangup: account=acme rule=max_concurrent_calls limit=2 ... detail='...'``): the word before
  the colon becomes ``action``, each pair a field (quoted values unquoted), and ``message``
  stays the whole line.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import re
import sys
from typing import Any

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}

#: Fields the formatter itself writes: an ``extra`` or parsed key of the same name is renamed.
_OWN = ("time", "level", "logger", "message", "exception")

_PREFIX = re.compile(r"([a-z][a-z_]*): ")
_PAIR = re.compile(r"""([a-z][a-z0-9_]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)(?: |$)""")


def key_values(message: str) -> dict[str, Any] | None:
    """The fields of a ``word: key=value key='quoted value' ...`` line, or None when the line
    is not entirely of that shape (free text is left alone)."""
    head = _PREFIX.match(message)
    if head is None:
        return None
    fields: dict[str, Any] = {"action": head.group(1)}
    pos = head.end()
    while pos < len(message):
        pair = _PAIR.match(message, pos)
        if pair is None:
            return None
        key, raw = pair.group(1), pair.group(2)
        fields[key] = _value(raw)
        pos = pair.end()
    return fields if len(fields) > 1 else None


def _value(raw: str) -> Any:
    if raw[0] in "'\"":
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "-":
        return None
    return raw


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
            .replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in (key_values(message) or {}).items():
            doc[_field(key)] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                doc[_field(key)] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def _field(key: str) -> str:
    return f"{key}_" if key in _OWN else key


class TextFormatter(logging.Formatter):
    """``2026-11-29T03:30:47.123+01:00 WARNING esl_guard.service: ...``"""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return dt.datetime.fromtimestamp(record.created).astimezone().isoformat(
            timespec="milliseconds")


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
