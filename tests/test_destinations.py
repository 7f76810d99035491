"""Destination classes (issue 12): classification, class limits, and what check-config says."""
from __future__ import annotations

from pathlib import Path

import pytest

from esl_guard.config import ConfigError, load_config
from esl_guard.model import Limits, Rate
from esl_guard.policy import DestinationClass, Destinations, class_limits, dialled

PREMIUM = DestinationClass("premium", ("1900", "1976", "44871", "882"), values={
    "max_concurrent_calls": 1, "max_minutes": Rate(30, 86400.0)})
INTERNATIONAL = DestinationClass("international", ("00", "011"),
                                 values={"max_concurrent_calls": 4})
LONG = DestinationClass("uk-premium", ("0044871",), values={"max_concurrent_calls": 0})
EMERGENCY = DestinationClass("emergency", ("112", "911", "000"), exempt=True)
DESTS = Destinations([PREMIUM, INTERNATIONAL, LONG, EMERGENCY])


@pytest.mark.parametrize(("number", "expected"), [
    ("19001234567", "premium"),
    ("+19001234567", "premium"),          # a leading + is ignored
    ("+4487100000", "premium"),
    ("0044871123456", "uk-premium"),      # the longest prefix wins over 00
    ("0044201234567", "international"),
    ("01144201234567", "international"),
    ("4420123456", None),                 # in no class
    ("1900", "premium"),                  # exactly the prefix
    ("190", None),                        # shorter than every prefix
    ("112", "emergency"),
    ("+911", "emergency"),
    ("1125551234", None),                 # an exempt class matches the whole number only
    ("0001", "international"),            # 000 is exempt only alone; 00 is a prefix
    ("000", "emergency"),
    ("", None),
    (None, None),
    ("+", None),
])
def test_classify(number: str | None, expected: str | None) -> None:
    assert DESTS.classify(number) == expected


def test_dialled_ignores_one_leading_plus() -> None:
    assert (dialled("+44"), dialled("44"), dialled("++44"), dialled(None)) == ("44", "44", "+44", "")


def test_class_limits_are_the_class_keys_on_top_of_the_account_settings() -> None:
    account = Limits(max_concurrent_calls=10, max_call_rate=Rate(60, 60.0), dry_run=True,
                     hangup_cause="OUTGOING_CALL_BARRED", max_minutes=Rate(600, 86400.0),
                     warn_only=frozenset({"max_call_rate"}))
    lim = class_limits(account, PREMIUM, {"max_concurrent_calls": 3})
    assert lim.max_concurrent_calls == 3              # CLASS.KEY of the account
    assert lim.max_minutes == Rate(30, 86400.0)       # the class's own
    assert lim.max_call_rate is None                  # an account limit is not a class limit
    assert (lim.dry_run, lim.hangup_cause, lim.warn_only) == (
        True, "OUTGOING_CALL_BARRED", frozenset({"max_call_rate"}))  # the account's settings


def test_limits_per_account_and_the_label_is_bounded() -> None:
    dests = Destinations([PREMIUM], Limits(), {"acme": Limits()},
                         {"acme": {"premium": {"max_concurrent_calls": 3}}})
    assert dests.limits("acme", "premium").max_concurrent_calls == 3
    assert dests.limits("other", "premium").max_concurrent_calls == 1
    assert (dests.label("premium"), dests.label(None), dests.label("gone")) == (
        "premium", "none", "none")
    assert dests.labels == {"premium", "none"}


NODE = "[freeswitch]\nhost = 127.0.0.1\n"


def conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "esl-guard.conf"
    path.write_text(NODE + "[database]\nurl = sqlite:////tmp/x.db\n" + text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def test_the_issue_example_loads(tmp_path: Path) -> None:
    cfg = load_config(conf(tmp_path, (
        "[destination:premium]\nprefixes = 1900 1976 44871 44872 44873 882 883\n"
        "max_concurrent_calls = 1\nmax_call_rate = 5/1h\nmax_call_duration = 10m\n"
        "max_minutes = 30/1d\nmax_distinct_destinations = 3/1h\nwarn_only = max_call_rate\n"
        "[destination:international]\nprefixes = 00 011\nmax_concurrent_calls = 4\n"
        "[destination:emergency]\nprefixes = 112 911\nexempt = true\n"
        "[account:acme]\npremium.max_concurrent_calls = 3\npremium.max_minutes = off\n")))
    dests = cfg.destinations
    assert dests.classify("+447871") is None and dests.classify("+44871") == "premium"
    acme, other = dests.limits("acme", "premium"), dests.limits("bob", "premium")
    assert (acme.max_concurrent_calls, acme.max_minutes) == (3, None)
    assert (other.max_concurrent_calls, other.max_minutes) == (1, Rate(30, 86400.0))
    assert other.max_distinct_destinations == Rate(3, 3600.0)
    assert other.max_call_duration == 600.0
    assert dests.exempt == {"emergency"}


@pytest.mark.parametrize(("text", "expected"), [
    ("[destination:premium]\nprefixes = +1900\n",
     "[destination:premium] prefixes = +1900: expected one or more prefixes of 1-32 digits such "
     "as 1900 44871, space separated (write 1900: a leading + of the dialled number is "
     "ignored)"),
    ("[destination:premium]\nprefixes = 19x0\n",
     "[destination:premium] prefixes = 19x0: expected one or more prefixes of 1-32 digits such "
     "as 1900 44871, space separated"),
    ("[destination:premium]\nprefixes = 1900 1900\n",
     "[destination:premium] prefixes = 1900 1900: expected each prefix once (1900 is listed "
     "twice)"),
    ("[destination:premium]\nmax_concurrent_calls = 1\n",
     "[destination:premium]: expected prefixes = the dialled-number prefixes of the class "
     "(digits, space separated)"),
    ("[destination:a]\nprefixes = 1900\n[destination:b]\nprefixes = 44 1900\n",
     "[destination:b] prefixes = 44 1900: prefix 1900 is already in [destination:a]: expected "
     "each prefix in one class only"),
    ("[destination:premium]\nprefixes = 1900\nmax_concurent_calls = 1\n",
     "[destination:premium] max_concurent_calls: unknown key (did you mean "
     "max_concurrent_calls?)"),
    ("[destination:premium]\nprefixes = 1900\nlock_after = 3/1m\n",
     "[destination:premium] lock_after: unknown key (lock_after belongs in [policy])"),
    ("[destination:emergency]\nprefixes = 112\nexempt = true\nmax_concurrent_calls = 1\n",
     "[destination:emergency]: exempt = true with max_concurrent_calls: expected no limits in "
     "an exempt class (its calls are never refused, hung up or counted)"),
    ("[destination:pre.mium]\nprefixes = 1900\n",
     "[destination:pre.mium]: destination class name not allowed: expected 1-64 characters "
     "from A-Z a-z 0-9 _ - starting with a letter or digit"),
    ("[account:acme]\npremium.max_concurrent_calls = 3\n",
     "[account:acme] premium.max_concurrent_calls = 3: no [destination:premium] section: "
     "expected CLASS.KEY to name a destination class (none is configured)"),
    ("[destination:premium]\nprefixes = 1900\n[account:acme]\npremium.max_concurent_calls = 3\n",
     "[account:acme] premium.max_concurent_calls: unknown key (CLASS.KEY: did you mean "
     "premium.max_concurrent_calls?)"),
    ("[destination:premium]\nprefixes = 1900\n[account:acme]\npremium.lock_after = 3/1m\n",
     "[account:acme] premium.lock_after: unknown key (CLASS.KEY: KEY must be one of "
     "max_concurrent_calls, max_call_rate, max_call_duration, max_minutes, "
     "max_distinct_destinations, max_short_calls, max_sequential_destinations, "
     "max_source_ips, caller_id_allowed, max_inbound_concurrent_calls, short_call, "
     "warn_only)"),
    ("[destination:premium]\nprefixes = 1900\n[account:acme]\npremium.max_minutes = 30\n",
     "[account:acme] premium.max_minutes = 30: expected N/DURATION with N >= 1, such as 60/1m "
     "or 3/60"),
    ("[destination:emergency]\nprefixes = 112\nexempt = true\n[account:acme]\n"
     "emergency.max_concurrent_calls = 3\n",
     "[account:acme] emergency.max_concurrent_calls = 3: [destination:emergency] is exempt: "
     "expected no limits for an exempt class"),
    ("[policy]\nmax_minutes = 30/0s\n",
     "[policy] max_minutes = 30/0s: expected N/DURATION with N >= 1, such as 60/1m or 3/60"),
    ("[destination:x]\nprefixes = 1900\nmax_inbound_concurrent_calls = 1\n",
     "[destination:x] max_inbound_concurrent_calls = 1: expected [policy] inbound_contexts to "
     "name the dialplan contexts of calls to an account"),
])
def test_check_config_rejects_bad_classes(tmp_path: Path, text: str, expected: str) -> None:
    path = conf(tmp_path, text)
    assert errors_of(path) == [f"{path}: {expected}"]
