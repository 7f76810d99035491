from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esl_guard.causes import HANGUP_CAUSES, is_hangup_cause
from esl_guard.safety import (
    describe_account,
    is_safe_account,
    is_uuid,
    redact_url,
    url_has_password,
)

HOSTILE = [
    "x\n\nbgapi system touch /tmp/p\n\n",
    "y api system id",
    "z/../../w",
    "%0A",
    "",
    "acme\n",
    "acme\r",
    "\nacme",
    "acme ",
    " acme",
    "acme\t",
    "acme\x00",
    "..",
    ".acme",
    "-acme",
    "_acme",
    "@dom",
    "acme/1",
    "a%20b",
    "acme;id",
    "acme'",
    'acme"',
    "acme${x}",
    "ácme",
    "acme\u202e",
    "１２３",  # full-width digits
    "a" * 65,
]
GOOD = ["acme", "1000", "acct.1-x@dom", "a", "A_b+c", "a..b", "9" * 64, "user@example.com"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_accounts_rejected(value: str) -> None:
    assert not is_safe_account(value)


@pytest.mark.parametrize("value", GOOD)
def test_good_accounts_accepted(value: str) -> None:
    assert is_safe_account(value)


@pytest.mark.parametrize("value", [None, 1000, b"acme", ["acme"]])
def test_non_strings_are_not_safe(value: object) -> None:
    assert not is_safe_account(value)
    assert not is_uuid(value)


@given(st.text())
def test_safe_account_never_holds_separators(s: str) -> None:
    if is_safe_account(s):
        assert not any(c.isspace() for c in s)
        assert "/" not in s and "%" not in s
        assert s.isascii() and s.isprintable()
        assert 1 <= len(s) <= 64


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}", fullmatch=True))
def test_safe_account_accepts_its_whole_charset(s: str) -> None:
    assert is_safe_account(s)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0a1b2c3d-4e5f-6789-abcd-ef0123456789", True),
        ("0A1B2C3D-4E5F-6789-ABCD-EF0123456789", True),
        ("0a1b2c3d4e5f6789abcdef0123456789", False),
        ("{0a1b2c3d-4e5f-6789-abcd-ef0123456789}", False),
        ("0a1b2c3d-4e5f-6789-abcd-ef0123456789\n", False),
        ("0a1b2c3d-4e5f-6789-abcd-ef0123456789 hupall", False),
        ("0a1b2c3d-4e5f-6789-abcd-ef012345678g", False),
        ("0a1b2c3d-4e5f-6789-abcd-ef012345678", False),
        ("", False),
    ],
)
def test_is_uuid(value: str, ok: bool) -> None:
    assert is_uuid(value) is ok


@given(st.uuids())
def test_every_uuid4_string_is_a_uuid(u: object) -> None:
    assert is_uuid(str(u))


def test_describe_account_keeps_safe_values() -> None:
    assert describe_account("acme") == "acme"
    assert describe_account(None) == "-"


@given(st.text(max_size=500))
def test_describe_account_is_one_short_printable_line(s: str) -> None:
    out = describe_account(s)
    assert out.isprintable()
    assert "\n" not in out and "\r" not in out
    assert len(out) <= 80


def test_describe_account_escapes_and_truncates() -> None:
    assert describe_account("x\n\nbgapi system touch /tmp/p\n\n") == (
        "'x\\n\\nbgapi system touch /tmp/p\\n\\n'"
    )
    long = describe_account("z" * 500 + "\n")
    assert len(long) == 80 and long.endswith("...")


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("postgresql+psycopg2://guard:s3cret@db/esl", "postgresql+psycopg2://guard:***@db/esl"),
        ("postgresql://guard:p@ss/w:rd@db:5432/esl", "postgresql://guard:***@db:5432/esl"),
        ("postgresql://guard@db/esl", "postgresql://guard@db/esl"),
        ("postgresql://db/esl?user=a&password=x&sslmode=require",
         "postgresql://db/esl?user=a&password=***&sslmode=require"),
        ("sqlite:////var/lib/esl-guard/esl-guard.db", "sqlite:////var/lib/esl-guard/esl-guard.db"),
        ("sqlite:////var/a:b@c/x.db", "sqlite:////var/a:b@c/x.db"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe
    assert url_has_password(url) is (url != safe)


def test_hangup_causes() -> None:
    assert len(HANGUP_CAUSES) == 81
    for name in ("CALL_REJECTED", "OUTGOING_CALL_BARRED", "NORMAL_CLEARING", "STALE_DATE",
                 "UNSPECIFIED", "BEARERCAPABILITY_NOTIMPL", "SRTP_READ_ERROR", "BOWOUT"):
        assert is_hangup_cause(name)
    assert all(c.isupper() or "_" in c for c in HANGUP_CAUSES)
    assert not is_hangup_cause("call_rejected")
    assert not is_hangup_cause("CALL_REJECTED\n")

