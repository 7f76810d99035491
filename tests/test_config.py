from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esl_guard.config import (
    DEFAULT_DB_URL,
    DURATION_EXPECTED,
    RATE_EXPECTED,
    SETTINGS,
    Config,
    ConfigError,
    DatabaseConfig,
    NodeConfig,
    describe_limits,
    diff_config,
    load_config,
    parse_duration,
    parse_rate,
)
from esl_guard.model import Limits, Rate

ROOT = Path(__file__).resolve().parent.parent
NODE = "[freeswitch]\n"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def conf(tmp_path: Path, text: str, name: str = "esl-guard.conf") -> Path:
    return write(tmp_path / name, text)


def errors_of(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# --------------------------------------------------------------------------- durations, rates


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0), ("90s", 90.0), ("1.5s", 1.5), ("500ms", 0.5), ("15m", 900.0),
        ("4h", 14400.0), ("1d", 86400.0), (".5s", 0.5), ("1.1m", 66.0), ("4H", 14400.0),
        (" 2m ", 120.0), ("3650d", 3650 * 86400.0), ("1ms", 0.001),
    ],
)
def test_parse_duration_good(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "0", "0s", "0.0m", "-5s", "5x", "s", "1e3", "inf", "nan", "5s5", "1.5.5",
     "１０s", "5sec", "5 minutes", "1/2", "0x10"],
)
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(DURATION_EXPECTED)}$"):
        parse_duration(text)


def test_parse_duration_has_an_upper_bound() -> None:
    with pytest.raises(ValueError, match="at most 3650d"):
        parse_duration("3651d")


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/1m", Rate(60, 60.0)), ("3/60", Rate(3, 60.0)), ("1/1s", Rate(1, 1.0)),
        (" 10 / 5m ", Rate(10, 300.0)), ("3/10m", Rate(3, 600.0)), ("5/500ms", Rate(5, 0.5)),
    ],
)
def test_parse_rate_good(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text",
    ["", "0/1m", "60", "60/", "/1m", "x/1m", "60/0", "60/-1m", "1.5/1m", "60/1m/2", "-1/1m",
     "60 per 1m", "60/1x"],
)
def test_parse_rate_bad(text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(RATE_EXPECTED)}$"):
        parse_rate(text)


def test_rate_round_trips_through_str() -> None:
    for text in ("60/1m", "3/10m", "5/90s", "2/1h"):
        assert str(parse_rate(text)) == text


# --------------------------------------------------------------------------- every key type

BAD_VALUES = [
    ("freeswitch", "host", "bad host", "expected a host name or IP address"),
    ("freeswitch", "port", "0", "expected a port number 1-65535"),
    ("freeswitch", "port", "65536", "expected a port number 1-65535"),
    ("freeswitch", "port", "http", "expected a port number 1-65535"),
    ("freeswitch", "password_env", "1BAD", "expected an environment variable name"),
    ("freeswitch", "command_timeout", "0", DURATION_EXPECTED),
    ("freeswitch", "connect_timeout", "soon", DURATION_EXPECTED),
    ("freeswitch", "resync_interval", "-1m", DURATION_EXPECTED),
    ("freeswitch", "heartbeat_interval", "20x", DURATION_EXPECTED),
    ("database", "url", "mysql://u@h/db",
     "expected an SQLAlchemy URL such as sqlite:////var/lib/esl-guard/esl-guard.db or "
     "postgresql+psycopg2://USER:PASSWORD@HOST/DBNAME (sqlite or postgresql only)"),
    ("database", "url", "/var/lib/esl-guard/esl-guard.db",
     "expected an SQLAlchemy URL such as sqlite:////var/lib/esl-guard/esl-guard.db or "
     "postgresql+psycopg2://USER:PASSWORD@HOST/DBNAME (sqlite or postgresql only)"),
    ("database", "auto_migrate", "maybe", "expected true or false (also yes/no, on/off, 1/0)"),
    ("database", "fail_mode", "ajar", "expected open or closed"),
    ("database", "queue_max", "0", "expected a whole number >= 1"),
    ("database", "queue_max", "1e4", "expected a whole number >= 1"),
    ("database", "poll_interval", "0s", DURATION_EXPECTED),
    ("policy", "account_variable", "account code",
     "expected a channel variable name (letters, digits, _)"),
    ("policy", "lock_realm", "esl/guard", "expected a mod_hash realm (letters, digits, _)"),
    ("policy", "max_concurrent_calls", "lots", "expected a whole number >= 0"),
    ("policy", "max_concurrent_calls", "-1", "expected a whole number >= 0"),
    ("policy", "max_concurrent_calls", "2.5", "expected a whole number >= 0"),
    ("policy", "max_call_duration", "0", DURATION_EXPECTED),
    ("policy", "max_call_rate", "60", RATE_EXPECTED),
    ("policy", "hangup_cause", "BANANA",
     "expected a FreeSWITCH hangup cause such as CALL_REJECTED or OUTGOING_CALL_BARRED"),
    ("policy", "hangup_cause", "CALL_REJECTD",
     "expected a FreeSWITCH hangup cause such as CALL_REJECTED or OUTGOING_CALL_BARRED "
     "(did you mean CALL_REJECTED?)"),
    ("policy", "dry_run", "perhaps", "expected true or false (also yes/no, on/off, 1/0)"),
    ("policy", "lock_after", "3", RATE_EXPECTED),
    ("policy", "lock_duration", "always",
     "expected a duration > 0 such as 30m, 1h or 7d, or forever"),
    ("policy", "lock_escalation", "0.5", "expected a number >= 1 such as 1, 1.5 or 2"),
    ("policy", "lock_escalation", "twice", "expected a number >= 1 such as 1, 1.5 or 2"),
    ("policy", "lock_duration_max", "forever", DURATION_EXPECTED),
    ("account:acme", "max_concurrent_calls", "lots", "expected a whole number >= 0"),
    ("account:acme", "max_call_rate", "fast", RATE_EXPECTED),
    ("account:acme", "lock_duration", "off",
     "expected a duration > 0 such as 30m, 1h or 7d, or forever"),
    ("metrics", "listen", "9464", "expected HOST:PORT such as 127.0.0.1:9464 or [::1]:9464"),
    ("metrics", "listen", "::1:9464", "expected HOST:PORT such as 127.0.0.1:9464 or [::1]:9464"),
    ("metrics", "listen", "[::1]:0", "expected HOST:PORT such as 127.0.0.1:9464 or [::1]:9464"),
    ("logging", "format", "xml", "expected text or json"),
    ("logging", "level", "loud", "expected debug, info, warning or error"),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), BAD_VALUES)
def test_bad_value_gives_exact_message(
    tmp_path: Path, section: str, key: str, value: str, expected: str
) -> None:
    head = "" if section == "freeswitch" else NODE
    path = conf(tmp_path, f"{head}[{section}]\n{key} = {value}\n")
    assert errors_of(path) == [f"{path}: [{section}] {key} = {value}: {expected}"]


def test_documented_example_message(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[account:acme]\nmax_concurrent_calls = lots\n")
    assert errors_of(path) == [
        f"{path}: [account:acme] max_concurrent_calls = lots: expected a whole number >= 0"
    ]


def test_password_is_never_echoed_in_errors(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\npassword = s3cr\x07t\n")
    assert errors_of(path) == [
        f"{path}: [freeswitch] password = ***: expected a non-empty password on one line"
    ]


def test_database_password_is_redacted_in_errors(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[database]\nurl = mysql://u:s3cret@h/db\n")
    (line,) = errors_of(path)
    assert "s3cret" not in line and "mysql://u:***@h/db" in line


def test_all_errors_are_collected_at_once(tmp_path: Path) -> None:
    main = conf(tmp_path, "[freeswitch]\nport = 0\n[policy]\nmax_concurrent_calls = lots\n"
                          "max_call_rate = 60\n[bogus]\n")
    extra = write(tmp_path / "conf.d" / "10-acme.conf",
                  "[account:acme]\nmax_call_duration = forever\nmax_concurent_calls = 2\n")
    assert errors_of(main) == [
        f"{main}: [freeswitch] port = 0: expected a port number 1-65535",
        f"{main}: [policy] max_concurrent_calls = lots: expected a whole number >= 0",
        f"{main}: [policy] max_call_rate = 60: {RATE_EXPECTED}",
        f"{main}: [bogus]: unknown section (expected freeswitch, freeswitch:NAME, database, "
        "policy, account:NAME, destination:NAME, notify, metrics, cluster, logging)",
        f"{extra}: [account:acme] max_call_duration = forever: {DURATION_EXPECTED}",
        f"{extra}: [account:acme] max_concurent_calls: unknown key "
        "(did you mean max_concurrent_calls?)",
    ]


def test_overridden_bad_value_is_still_an_error(tmp_path: Path) -> None:
    main = conf(tmp_path, NODE + "[policy]\nmax_concurrent_calls = lots\n")
    write(tmp_path / "conf.d" / "a.conf", "[policy]\nmax_concurrent_calls = 5\n")
    assert errors_of(main) == [
        f"{main}: [policy] max_concurrent_calls = lots: expected a whole number >= 0"
    ]


# --------------------------------------------------------------------------- names


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[policy]\nmax_concurent_calls = 20\n")
    assert errors_of(path) == [
        f"{path}: [policy] max_concurent_calls: unknown key (did you mean max_concurrent_calls?)"
    ]


def test_unknown_key_without_suggestion(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[logging]\nzzz = 1\n")
    assert errors_of(path) == [f"{path}: [logging] zzz: unknown key (expected one of format, level)"]


@pytest.mark.parametrize(
    ("section", "key", "home"),
    [("account:acme", "account_variable", "policy"), ("account:acme", "lock_realm", "policy"),
     ("policy", "host", "freeswitch"), ("freeswitch", "max_call_rate", "policy")],
)
def test_key_in_the_wrong_section(tmp_path: Path, section: str, key: str, home: str) -> None:
    head = "" if section == "freeswitch" else NODE
    path = conf(tmp_path, f"{head}[{section}]\n{key} = x\n")
    assert errors_of(path) == [f"{path}: [{section}] {key}: unknown key ({key} belongs in [{home}])"]


@pytest.mark.parametrize("section", ["polcy", "DEFAULT", "account", "metrics:x", "Policy", ""])
def test_unknown_section(tmp_path: Path, section: str) -> None:
    path = conf(tmp_path, f"{NODE}[{section}]\n")
    assert errors_of(path) == [
        f"{path}: [{section}]: unknown section (expected freeswitch, freeswitch:NAME, database, "
        "policy, account:NAME, destination:NAME, notify, metrics, cluster, logging)"
    ]


@pytest.mark.parametrize("name", ["bad name", "a/b", "-x", "%0A", "x" * 65])
def test_unsafe_account_section_rejected(tmp_path: Path, name: str) -> None:
    path = conf(tmp_path, f"{NODE}[account:{name}]\nmax_concurrent_calls = 1\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: [account:") and "account name not allowed" in line


def test_keys_are_case_insensitive(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[policy]\nMax_Concurrent_Calls = 5\nHANGUP_CAUSE = user_busy\n")
    policy = load_config(path).policy
    assert policy.max_concurrent_calls == 5 and policy.hangup_cause == "USER_BUSY"


# --------------------------------------------------------------------------- syntax


def test_inline_comments(tmp_path: Path) -> None:
    path = conf(tmp_path, (
        "; full-line comment\n"
        "# another\n"
        "[freeswitch]   ; one node\n"
        "password = pa;ss#word   ; inline ; comment\n"
        "[policy]   ; applies to every account\n"
        "max_concurrent_calls = 20  # twenty\n"
        "max_call_rate = 60/1m ; sixty a minute\n"
        "   ; an indented comment\n"
        "dry_run = yes\n"
    ))
    config = load_config(path)
    assert config.nodes[0].password == "pa;ss#word"
    assert config.policy.max_concurrent_calls == 20
    assert config.policy.max_call_rate == Rate(60, 60.0)
    assert config.policy.dry_run is True


def test_no_interpolation(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\npassword = 100%(secret)s%\n")
    assert load_config(path).nodes[0].password == "100%(secret)s%"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host = x\n[freeswitch]\n", "line 1: host = x: expected a [section] header"),
        ("[freeswitch]\nport = 1\nport = 2\n", "line 3: [freeswitch] port is set twice"),
        ("[freeswitch]\nPort = 1\nport = 2\n", "line 3: [freeswitch] port is set twice"),
        ("[freeswitch]\n[policy]\n[freeswitch]\n", "line 3: [freeswitch] appears twice"),
        ("[freeswitch]\njust some words\n", "line 2: just some words: expected key = value"),
        ("[freeswitch]\n[policy] junk\n", "line 2: [policy] junk: expected key = value"),
        ("[freeswitch]\nhost: 127.0.0.1\n", "line 2: host: 127.0.0.1: expected key = value"),
    ],
)
def test_unparseable_files(tmp_path: Path, text: str, message: str) -> None:
    path = conf(tmp_path, text)
    errors = errors_of(path)
    assert any(e.startswith(f"{path}: {message}") for e in errors), errors


def test_indented_key_is_a_continuation_and_says_so(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[policy]\nmax_concurrent_calls = 20\n  max_call_rate = 6/1m\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: [policy] max_concurrent_calls = 20\\nmax_call_rate")
    assert "remove the indentation" in line


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "esl-guard.conf"
    path.write_bytes(b"[freeswitch]\npassword = caf\xe9\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: ") and "expected a UTF-8 encoded file" in line


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "esl-guard.conf"
    path.write_bytes(b"\xef\xbb\xbf[freeswitch]\n")
    assert load_config(path).nodes[0].name == "default"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    assert errors_of(path) == [f"{path}: cannot read: No such file or directory"]


def test_unreadable_file_in_conf_d(tmp_path: Path) -> None:
    main = conf(tmp_path, NODE)
    (tmp_path / "conf.d" / "dir.conf").mkdir(parents=True)
    (line,) = errors_of(main)
    assert line.startswith(f"{tmp_path / 'conf.d' / 'dir.conf'}: cannot read")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(alphabet="[]=;#:\n\t %abcfreswitchpoly0123", max_size=200))
def test_garbage_never_escapes_as_another_exception(tmp_path: Path, data: bytes | str) -> None:
    path = tmp_path / "fuzz.conf"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert exc.errors
        for line in exc.errors:
            assert line.startswith(f"{path}: ")
            assert "Traceback" not in line and "configparser" not in line
            assert "\n" not in line and line.isprintable()


# --------------------------------------------------------------------------- files


def test_conf_d_overrides_per_key_in_name_order(tmp_path: Path) -> None:
    main = conf(tmp_path, NODE + "[policy]\nmax_concurrent_calls = 20\nmax_call_duration = 4h\n")
    b = write(tmp_path / "conf.d" / "20-b.conf", "[policy]\nmax_concurrent_calls = 40\n")
    a = write(tmp_path / "conf.d" / "10-a.conf",
              "[policy]\nmax_concurrent_calls = 30\nmax_call_rate = 5/1m\n")
    write(tmp_path / "conf.d" / "README", "[not ini")
    write(tmp_path / "conf.d" / "x.conf.disabled", "[not ini")
    config = load_config(main)
    assert config.files == (str(main), str(a), str(b))
    assert config.policy.max_concurrent_calls == 40
    assert config.policy.max_call_duration == 4 * 3600
    assert config.policy.max_call_rate == Rate(5, 60.0)
    assert config.sources["[policy] max_concurrent_calls"] == str(b)
    assert config.sources["[policy] max_call_duration"] == str(main)
    assert config.sources["[policy] max_call_rate"] == str(a)


def test_directory_path(tmp_path: Path) -> None:
    one = write(tmp_path / "b.conf", "[policy]\nmax_concurrent_calls = 2\n")
    zero = write(tmp_path / "a.conf", NODE + "[policy]\nmax_concurrent_calls = 1\n")
    drop = write(tmp_path / "conf.d" / "z.conf", "[policy]\nmax_call_duration = 1h\n")
    config = load_config(tmp_path)
    assert config.files == (str(zero), str(one), str(drop))
    assert config.policy.max_concurrent_calls == 2
    assert config.policy.max_call_duration == 3600


def test_empty_directory(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path)
    assert line.startswith(f"{tmp_path}: no *.conf file")


# --------------------------------------------------------------------------- accounts


def test_account_merge_and_off(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + (
        "[policy]\nmax_concurrent_calls = 20\nmax_call_duration = 4h\nmax_call_rate = 60/1m\n"
        "lock_after = 3/10m\nhangup_cause = CALL_REJECTED\n"
        "[account:acme]\nmax_concurrent_calls = 2\nmax_call_rate = off\nlock_after = none\n"
        "hangup_cause = outgoing_call_barred\n"
        "[account:acct.1-x@dom]\nmax_call_duration = OFF\nlock_duration = forever\n"
    ))
    config = load_config(path)
    acme = config.limits_for("acme")
    assert acme == Limits(max_concurrent_calls=2, max_call_duration=14400.0, max_call_rate=None,
                          hangup_cause="OUTGOING_CALL_BARRED", lock_after=None)
    other = config.limits_for("acct.1-x@dom")
    assert other.max_call_duration is None and other.lock_duration is None
    assert other.max_concurrent_calls == 20 and other.lock_after == Rate(3, 600.0)
    assert config.limits_for("nobody") is config.policy
    assert set(config.accounts) == {"acme", "acct.1-x@dom"}
    with pytest.raises(TypeError):
        config.accounts["x"] = config.policy  # type: ignore[index]


def test_off_words_in_policy(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[policy]\nmax_concurrent_calls = off\nlock_duration_max = none\n")
    assert load_config(path).policy == Limits()


def test_zero_concurrent_calls_is_allowed(tmp_path: Path) -> None:
    path = conf(tmp_path, NODE + "[account:blocked]\nmax_concurrent_calls = 0\n")
    assert load_config(path).limits_for("blocked").max_concurrent_calls == 0


def test_account_split_across_files(tmp_path: Path) -> None:
    main = conf(tmp_path, NODE + "[account:acme]\nmax_concurrent_calls = 2\n")
    write(tmp_path / "conf.d" / "acme.conf", "[account:acme]\nmax_call_rate = 3/1m\n")
    acme = load_config(main).limits_for("acme")
    assert acme.max_concurrent_calls == 2 and acme.max_call_rate == Rate(3, 60.0)


def test_defaults(tmp_path: Path) -> None:
    config = load_config(conf(tmp_path, NODE))
    assert config.nodes == (NodeConfig(name="default"),)
    node = config.nodes[0]
    assert (node.host, node.port, node.password) == ("127.0.0.1", 8021, "ClueCon")
    assert (node.command_timeout, node.connect_timeout) == (5.0, 5.0)
    assert (node.resync_interval, node.heartbeat_interval) == (60.0, 20.0)
    assert config.database == DatabaseConfig()
    assert config.database.url == DEFAULT_DB_URL
    assert config.database.journal == "/var/lib/esl-guard/journal.jsonl"
    assert config.policy == Limits()
    assert config.accounts == {}
    assert (config.account_variable, config.lock_realm) == ("accountcode", "esl_guard")
    assert config.metrics is None
    assert (config.logging.format, config.logging.level) == ("text", "INFO")
    assert config.warnings == ()


def test_every_value_parsed(tmp_path: Path) -> None:
    path = conf(tmp_path, (
        "[freeswitch:edge1]\nhost = fs1.example.net\nport = 8022\npassword = pw1\n"
        "command_timeout = 2s\nconnect_timeout = 1500ms\nresync_interval = 5m\n"
        "heartbeat_interval = 30\n"
        "[freeswitch:edge2]\nhost = [::1]\n"
        "[database]\nurl = postgresql+psycopg2://guard:pw@db/esl\nauto_migrate = no\n"
        "fail_mode = CLOSED\njournal = /srv/journal.jsonl\nqueue_max = 5\npoll_interval = 1.5s\n"
        "[policy]\naccount_variable = sip_h_X_Account\nlock_realm = guard_1\n"
        "lock_after = 3/10m\nlock_duration = 30m\nlock_escalation = 2.5\nlock_duration_max = 7d\n"
        "[metrics]\nlisten = [::1]:9464\n"
        "[logging]\nformat = JSON\nlevel = Warning\n"
    ))
    c = load_config(path)
    assert c.nodes == (
        NodeConfig("edge1", "fs1.example.net", 8022, "pw1", 2.0, 1.5, 300.0, 30.0),
        NodeConfig("edge2", "::1"),
    )
    assert c.database == DatabaseConfig("postgresql+psycopg2://guard:pw@db/esl", False, "closed",
                                        "/srv/journal.jsonl", 5, 1.5)
    assert (c.account_variable, c.lock_realm) == ("sip_h_X_Account", "guard_1")
    assert c.policy.lock_after == Rate(3, 600.0) and c.policy.lock_duration == 1800.0
    assert c.policy.lock_escalation == 2.5 and c.policy.lock_duration_max == 7 * 86400
    assert c.metrics is not None and (c.metrics.host, c.metrics.port) == ("::1", 9464)
    assert (c.logging.format, c.logging.level) == ("json", "WARNING")


def test_metrics_section_without_listen_uses_default(tmp_path: Path) -> None:
    metrics = load_config(conf(tmp_path, NODE + "[metrics]\n")).metrics
    assert metrics is not None and (metrics.host, metrics.port) == ("127.0.0.1", 9464)


@pytest.mark.parametrize(
    ("url", "journal"),
    [
        ("sqlite:////srv/guard/guard.db", "/srv/guard/journal.jsonl"),
        ("sqlite:///guard.db", "./journal.jsonl"),
        ("sqlite:///data/guard.db?timeout=5", "data/journal.jsonl"),
        ("sqlite://", "/var/lib/esl-guard/journal.jsonl"),
        ("postgresql://guard@db/esl", "/var/lib/esl-guard/journal.jsonl"),
    ],
)
def test_journal_default(tmp_path: Path, url: str, journal: str) -> None:
    path = conf(tmp_path, f"{NODE}[database]\nurl = {url}\n")
    assert load_config(path).database.journal == journal


# --------------------------------------------------------------------------- nodes


def test_no_freeswitch_section(tmp_path: Path) -> None:
    path = conf(tmp_path, "[policy]\nmax_concurrent_calls = 1\n")
    assert errors_of(path) == [
        f"{path}: no [freeswitch] section: expected at least one FreeSWITCH node"
    ]


def test_nodes_from_main_and_conf_d(tmp_path: Path) -> None:
    main = conf(tmp_path, "[freeswitch]\nhost = 10.0.0.1\n")
    write(tmp_path / "conf.d" / "b.conf", "[freeswitch:b]\nhost = 10.0.0.2\n")
    assert [n.name for n in load_config(main).nodes] == ["default", "b"]


def test_duplicate_host_port(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch:a]\nhost = 10.0.0.1\n[freeswitch:b]\nhost = 10.0.0.1\n")
    assert errors_of(path) == [
        f"{path}: [freeswitch:b]: 10.0.0.1:8021 is already [freeswitch:a]: expected one "
        "section per FreeSWITCH"
    ]


def test_plain_and_default_node_conflict(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\nhost = a\n[freeswitch:default]\nhost = b\n")
    (line, *_) = errors_of(path)
    assert "expected either [freeswitch] or [freeswitch:default], not both" in line


@pytest.mark.parametrize("name", ["", "a b", "-x", "a/b"])
def test_bad_node_name(tmp_path: Path, name: str) -> None:
    path = conf(tmp_path, f"[freeswitch:{name}]\n")
    (line,) = errors_of(path)
    assert "node name not allowed" in line


def test_password_not_in_repr(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\npassword = hunter2\n[database]\n"
                          "url = postgresql://guard:dbsecret@db/esl\n")
    config = load_config(path)
    assert "hunter2" not in repr(config) and "dbsecret" not in repr(config)
    assert "postgresql://guard:***@db/esl" in repr(config.database)
    assert config.database.safe_url == "postgresql://guard:***@db/esl"


# --------------------------------------------------------------------------- password sources


def test_password_file_relative_to_conf(tmp_path: Path) -> None:
    write(tmp_path / "secret", "  s3cret  \nsecond line\n")
    path = conf(tmp_path, "[freeswitch]\npassword_file = secret\n")
    config = load_config(path)
    assert config.nodes[0].password == "s3cret"
    assert config.warnings == ()


def test_password_file_unreadable(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\npassword_file = /nonexistent/esl-pw\n")
    assert errors_of(path) == [
        f"{path}: [freeswitch] password_file = /nonexistent/esl-pw: expected a readable file "
        "(No such file or directory)"
    ]


def test_password_file_empty(tmp_path: Path) -> None:
    write(tmp_path / "empty", "")
    path = conf(tmp_path, "[freeswitch]\npassword_file = empty\n")
    assert errors_of(path) == [
        f"{path}: [freeswitch] password_file = empty: expected the password on the first line"
    ]


def test_password_env(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\npassword_env = ESL_PW\n")
    assert load_config(path, environ={"ESL_PW": "from-env"}).nodes[0].password == "from-env"
    assert errors_of(path, environ={}) == [
        f"{path}: [freeswitch] password_env = ESL_PW: expected the environment variable "
        "ESL_PW to be set and not empty"
    ]


def test_password_env_uses_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESL_GUARD_TEST_PW", "os-env")
    path = conf(tmp_path, "[freeswitch]\npassword_env = ESL_GUARD_TEST_PW\n")
    assert load_config(path).nodes[0].password == "os-env"


def test_at_most_one_password_source(tmp_path: Path) -> None:
    path = conf(tmp_path, "[freeswitch]\npassword = a\npassword_env = ESL_PW\n")
    assert errors_of(path, environ={"ESL_PW": "b"}) == [
        f"{path}: [freeswitch] password, password_env: expected at most one of password, "
        "password_file, password_env"
    ]


# --------------------------------------------------------------------------- permissions

PERM = "readable by other users but holds the ESL password (chmod 600 or chmod 640 with group " \
       "esl-guard)"


def test_permission_warning_for_password(tmp_path: Path) -> None:
    path = write(tmp_path / "esl-guard.conf", "[freeswitch]\npassword = pw\n", mode=0o644)
    assert load_config(path).warnings == (f"{path}: {PERM}",)
    path.chmod(0o600)
    assert load_config(path).warnings == ()


def test_no_permission_warning_without_password(tmp_path: Path) -> None:
    path = write(tmp_path / "esl-guard.conf", "[freeswitch]\nhost = 10.0.0.1\n", mode=0o644)
    assert load_config(path).warnings == ()


def test_permission_warning_for_password_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "pw", "pw\n", mode=0o604)
    path = conf(tmp_path, "[freeswitch]\npassword_file = pw\n")
    assert load_config(path).warnings == (f"{secret}: {PERM}",)


def test_permission_warning_for_database_password(tmp_path: Path) -> None:
    path = write(tmp_path / "esl-guard.conf",
                 NODE + "[database]\nurl = postgresql://u:pw@db/esl\n", mode=0o644)
    (warning,) = load_config(path).warnings
    assert warning.startswith(f"{path}: readable by other users but holds the database password")


def test_group_readable_by_root_group_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path / "esl-guard.conf", "[freeswitch]\npassword = pw\n", mode=0o640)
    if os.stat(path).st_gid != 0:
        pytest.skip("needs a file owned by group root")
    assert load_config(path).warnings == ()


# --------------------------------------------------------------------------- reporting


def test_describe_limits() -> None:
    assert describe_limits(Limits()) == {
        "max_concurrent_calls": "off", "max_call_duration": "off", "max_call_rate": "off",
        "hangup_cause": "CALL_REJECTED", "dry_run": "false", "lock_after": "off",
        "lock_duration": "1h", "lock_escalation": "1", "lock_duration_max": "off",
        **OFF_DETECTORS,
    }
    limits = Limits(max_concurrent_calls=0, max_call_duration=5400.0,
                    max_call_rate=Rate(60, 60.0), dry_run=True, lock_after=Rate(3, 600.0),
                    lock_duration=None, lock_escalation=1.5, lock_duration_max=1.5)
    assert describe_limits(limits) == {
        "max_concurrent_calls": "0", "max_call_duration": "90m", "max_call_rate": "60/1m",
        "hangup_cause": "CALL_REJECTED", "dry_run": "true", "lock_after": "3/10m",
        "lock_duration": "forever", "lock_escalation": "1.5", "lock_duration_max": "1.5s",
        **OFF_DETECTORS,
    }


OFF_DETECTORS = {
    "max_distinct_destinations": "off", "max_short_calls": "off", "short_call": "6s",
    "max_sequential_destinations": "off", "max_source_ips": "off", "caller_id_allowed": "off",
    "max_inbound_concurrent_calls": "off", "inbound_contexts": "off", "warn_only": "off",
    "max_minutes": "off",
}


def test_diff_config(tmp_path: Path) -> None:
    old = load_config(conf(tmp_path, (
        "[freeswitch]\nhost = 10.0.0.1\npassword = old-secret\n"
        "[freeswitch:gone]\nhost = 10.0.0.9\n"
        "[policy]\nmax_concurrent_calls = 20\n"
        "[account:acme]\nmax_call_duration = 1h\n"
        "[account:bob]\nmax_concurrent_calls = 1\n"
        "[account:same]\nmax_concurrent_calls = 5\n"
    ), "old.conf"))
    new = load_config(conf(tmp_path, (
        "[freeswitch]\nhost = 10.0.0.2\npassword = new-secret\n"
        "[freeswitch:b]\nhost = 10.0.0.3\nport = 8022\n"
        "[database]\nfail_mode = closed\n"
        "[policy]\nmax_concurrent_calls = 30\n"
        "[account:acme]\nmax_call_duration = 1h\nmax_call_rate = 3/1m\n"
        "[account:same]\nmax_concurrent_calls = 5\n"
        "[account:carol]\n"
        "[metrics]\n"
        "[logging]\nlevel = debug\n"
    ), "new.conf"))
    lines = diff_config(old, new)
    assert lines == [
        "[freeswitch] host: 10.0.0.1 -> 10.0.0.2",
        "[freeswitch] password changed",
        "node b added (10.0.0.3:8022)",
        "node gone removed",
        "[database] fail_mode: open -> closed",
        "[policy] max_concurrent_calls: 20 -> 30",
        "[account:acme] max_call_rate: off -> 3/1m",
        "account carol added",
        "account bob removed",
        "[metrics] listen: off -> 127.0.0.1:9464",
        "[logging] level: INFO -> DEBUG",
    ]
    assert not any("secret" in line for line in lines)
    assert diff_config(new, new) == []


def test_diff_database_url_hides_password() -> None:
    node = (NodeConfig("default"),)
    old = Config(nodes=node, database=DatabaseConfig(url="postgresql://u:one@db/esl"))
    new = Config(nodes=node, database=DatabaseConfig(url="postgresql://u:two@db/esl"))
    assert diff_config(old, new) == ["[database] url: password changed"]
    moved = Config(nodes=node, database=DatabaseConfig(url="postgresql://u:two@db2/esl"))
    assert diff_config(old, moved) == [
        "[database] url: postgresql://u:***@db/esl -> postgresql://u:***@db2/esl"
    ]


def test_config_can_be_built_directly() -> None:
    config = Config(nodes=(NodeConfig("default"),), accounts={"acme": Limits(dry_run=True)})
    assert config.limits_for("acme").dry_run is True
    assert config.limits_for("other") == Limits()


# --------------------------------------------------------------------------- shipped file


def test_shipped_conf_loads() -> None:
    config = load_config(ROOT / "conf" / "esl-guard.conf")
    assert config.database.url == DEFAULT_DB_URL
    assert config.policy == Limits(max_concurrent_calls=20, max_call_duration=4 * 3600.0,
                                   max_call_rate=Rate(60, 60.0), hangup_cause="CALL_REJECTED",
                                   dry_run=False)
    assert [n.name for n in config.nodes] == ["default"]
    assert config.accounts == {}


def test_shipped_conf_documents_every_key() -> None:
    text = (ROOT / "conf" / "esl-guard.conf").read_text()
    for name in SETTINGS:
        assert re.search(rf"^;?{name} = ", text, re.MULTILINE), name


def test_shipped_conf_examples_are_valid(tmp_path: Path) -> None:
    """Uncommenting every example key still gives a valid file (minus the password choice)."""
    text = (ROOT / "conf" / "esl-guard.conf").read_text()
    text = re.sub(r"^;(?=(\[|[a-z_]+ = ))", "", text, flags=re.MULTILINE)
    text = re.sub(r"^(password|password_env) = .*$", "", text, flags=re.MULTILINE)
    text = text.replace("/etc/esl-guard/esl-password", str(write(tmp_path / "pw", "x\n")))
    text = text.replace("/etc/esl-guard/edge2-password", str(tmp_path / "pw"))
    config = load_config(conf(tmp_path, text))
    assert [n.name for n in config.nodes] == ["default", "edge2"]
    assert config.limits_for("acme").max_concurrent_calls == 2
    assert config.metrics is not None


def test_cluster_failover_after(tmp_path: Path) -> None:
    """[cluster] failover_after (issue 14): 10s by default, 1s to 10m."""
    base = "[freeswitch]\n"
    assert load_config(conf(tmp_path, base)).cluster.failover_after == 10.0
    assert load_config(conf(tmp_path, base + "[cluster]\nfailover_after = 3s\n")
                       ).cluster.failover_after == 3.0
    alone = load_config(conf(tmp_path, base + "[cluster]\nfailover_after = 3s\n"))
    assert any("[cluster] has no effect without a PostgreSQL" in w for w in alone.warnings)
    group = load_config(conf(tmp_path, base + "[database]\nurl = postgresql://u@db/esl\n"
                                              "[cluster]\nfailover_after = 3s\n"))
    assert not any("[cluster]" in w for w in group.warnings)
    main = conf(tmp_path, base + "[cluster]\nfailover_after = 500ms\n")
    assert errors_of(main) == [f"{main}: [cluster] failover_after = 500ms: expected a duration "
                               "from 1s to 10m such as 10s"]
