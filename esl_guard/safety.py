"""Validators for values that come from the network and end up in an ESL command or a log line.

Account codes are set from SIP data, so they are attacker-controlled.  A newline inside one
would start a new ESL command, a space or a slash would change the arguments of ``hash`` or
``hupall``.  Nothing that fails :func:`is_safe_account` is ever written into a command line;
:func:`describe_account` is the only way such a value reaches a log line.
"""
from __future__ import annotations

import re

__all__ = [
    "ACCOUNT_SAFE_RE",
    "UUID_RE",
    "describe_account",
    "is_safe_account",
    "is_uuid",
    "redact_url",
    "url_has_password",
]

# The canonical 8-4-4-4-12 form FreeSWITCH prints for Unique-ID (ASCII hex only).
UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

# Starts with a letter or digit, at most 64 characters, no whitespace, '/', '%', quotes or
# control characters.  Explicit ASCII classes: \w would admit Unicode letters.
ACCOUNT_SAFE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")

_DESCRIBE_MAX = 80


def is_uuid(s: object) -> bool:
    """True for a channel UUID in canonical form (what FreeSWITCH uses), nothing else."""
    return isinstance(s, str) and UUID_RE.fullmatch(s) is not None


def is_safe_account(s: object) -> bool:
    """True when ``s`` may be written into an ESL command line as an account code."""
    return isinstance(s, str) and ACCOUNT_SAFE_RE.fullmatch(s) is not None


def describe_account(s: str | None) -> str:
    """A printable, one-line form of an account for log lines.

    Safe accounts are returned as they are.  Anything else is shown ``repr``-style (quoted,
    control and non-printable characters escaped) and cut to at most 80 characters, so a
    hostile value can neither forge log lines nor flood them.
    """
    if s is None:
        return "-"
    if is_safe_account(s):
        return s
    text = repr(str(s))
    if len(text) > _DESCRIBE_MAX:
        text = text[: _DESCRIBE_MAX - 3] + "..."
    return text


_URL_QUERY_PW_RE = re.compile(r"(?i)([?&]password=)[^&]*")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (userinfo and ``?password=``)."""
    # The password is everything between the first ':' of the userinfo and the last '@'
    # before the path; an unencoded '@' or '/' in a password must not leak its tail.
    scheme_end = url.find("://")
    out = url
    if scheme_end >= 0:
        rest = url[scheme_end + 3 :]
        at = rest.rfind("@")
        colon = rest.find(":")
        if at >= 0 and 0 <= colon < at and "/" not in rest[:colon]:
            out = url[: scheme_end + 3] + rest[:colon] + ":***@" + rest[at + 1 :]
    return _URL_QUERY_PW_RE.sub(r"\1***", out)


def url_has_password(url: str) -> bool:
    """True when :func:`redact_url` would hide something."""
    return redact_url(url) != url
