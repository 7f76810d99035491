"""Reading the conf files: parse, validate every key against the settings table, merge the
files in order, build the :class:`Config`.  Every problem of every file is collected into one
:class:`ConfigError`, never a traceback."""
from __future__ import annotations

import configparser
import difflib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from esl_guard.config.converters import CLASS_NAME_RE, NODE_NAME_RE, OFF_WORDS, sqlite_file
from esl_guard.config.settings import (
    DEFAULT_JOURNAL,
    DEFAULT_NODE,
    LIMIT_KEYS,
    PASSWORD_KEYS,
    PERM_HINT,
    PLAIN_SECTIONS,
    SECTION_HELP,
    SETTINGS,
    ClusterConfig,
    Config,
    DatabaseConfig,
    LoggingConfig,
    MetricsConfig,
    NodeConfig,
    NotifyConfig,
    Setting,
    default_value,
)
from esl_guard.model import Limits
from esl_guard.policy.destinations import (
    CLASS_KEYS,
    CLASS_LIMIT_KEYS,
    DestinationClass,
    Destinations,
)
from esl_guard.safety import is_safe_account, redact_url, url_has_password


class ConfigError(Exception):
    """Every problem found in the conf files, one ``FILE: ...`` line each."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


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
        self.given: set[tuple[str, str]] = set()  # (section, key) written, even if rejected

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
        if not (section in PLAIN_SECTIONS
                or (sep and kind in ("freeswitch", "account", "destination"))):
            return self.error(f"{file}: [{_show(section, None)}]: {SECTION_HELP}")
        if kind == "destination" and not CLASS_NAME_RE.fullmatch(ident):
            return self.error(
                f"{file}: [{_show(section, None)}]: destination class name not allowed: "
                "expected 1-64 characters from A-Z a-z 0-9 _ - starting with a letter or digit"
            )
        if kind == "account" and not is_safe_account(ident):
            return self.error(
                f"{file}: [{_show(section, None)}]: account name not allowed: expected 1-64 "
                "characters from A-Z a-z 0-9 _ . @ + - starting with a letter or digit"
            )
        if kind == "freeswitch" and ":" in section and not NODE_NAME_RE.fullmatch(ident):
            return self.error(
                f"{file}: [{_show(section, None)}]: node name not allowed: expected 1-64 "
                "characters from A-Z a-z 0-9 _ . - starting with a letter or digit"
            )
        merged = self.sections.setdefault(section, {})
        self.section_file.setdefault(section, file)
        for key, text in items:
            self.given.add((section, key))
            value = self.read_value(file, section, kind, key, text)
            if value is not None:
                merged[key] = value
        if kind == "freeswitch" and "password" in dict(items) and _readable_by_others(file):
            self.warnings.append(f"{file}: readable by other users but holds the ESL "
                                 f"password {PERM_HINT}")
        url = dict(items).get("url")
        if kind == "database" and url and url_has_password(url) and _readable_by_others(file):
            self.warnings.append(f"{file}: readable by other users but holds the database "
                                 f"password {PERM_HINT}")

    def read_value(self, file: str, section: str, kind: str, key: str,
                   text: str) -> _Value | None:
        if kind == "account" and "." in key:
            return self.read_class_value(file, section, key, text)
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
        return self.convert(where, setting, text, file)

    def convert(self, where: str, setting: Setting, text: str, file: str) -> _Value | None:
        if setting.off and text.lower() in OFF_WORDS:
            return _Value(text, None, file)
        try:
            return _Value(text, setting.convert(text), file)
        except ValueError as exc:
            self.error(f"{where}: {exc}")
            return None

    def read_class_value(self, file: str, section: str, key: str, text: str) -> _Value | None:
        """``CLASS.KEY = value`` in an account: the account's own limit for its calls to a
        destination class (the class itself is checked once every file is read)."""
        cls, _, name = key.partition(".")
        if not CLASS_NAME_RE.fullmatch(cls) or name not in CLASS_KEYS:
            if not CLASS_NAME_RE.fullmatch(cls):
                hint = "CLASS must be the NAME of a [destination:NAME] section"
            elif close := difflib.get_close_matches(name, CLASS_KEYS, n=1):
                hint = f"did you mean {cls}.{close[0]}?"
            else:
                hint = "KEY must be one of " + ", ".join(CLASS_KEYS)
            self.error(f"{file}: [{section}] {_show(key, None)}: unknown key (CLASS.KEY: {hint})")
            return None
        where = f"{file}: [{section}] {key} = {_show(text, None)}"
        if "\n" in text:
            self.error(f"{where}: expected a value on one line")
            return None
        return self.convert(where, SETTINGS[name], text, file)

    # -- the merged result

    def get(self, section: str, key: str) -> Any:
        v = self.sections.get(section, {}).get(key)
        return default_value(key) if v is None else v.value

    def node(self, section: str) -> NodeConfig | None:
        values = self.sections[section]
        given = [k for k in PASSWORD_KEYS if k in values]
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
            node_lost_after=self.get(section, "node_lost_after"),
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
                                     f"password {PERM_HINT}")
            return secret
        return str(self.get(section, "password"))

    def check_detectors(self, policy: Limits) -> None:
        """Keys that only make sense together (issue 13)."""
        if policy.inbound_contexts:
            return
        for section, values in self.sections.items():
            for key, value in values.items():
                if key.rpartition(".")[2] == "max_inbound_concurrent_calls" \
                        and value.value is not None:
                    self.error(f"{value.file}: [{section}] {key} = {value.text}: expected "
                               "[policy] inbound_contexts to name the dialplan contexts of "
                               "calls to an account")

    def destinations(self, policy: Limits, accounts: Mapping[str, Limits]) -> Destinations:
        """The [destination:NAME] classes and the accounts' CLASS.KEY limits (issue 12):
        prefixes are required and unique across classes; an exempt class has no limits; a
        CLASS.KEY names a class that exists."""
        classes: list[DestinationClass] = []
        owner: dict[str, str] = {}
        for section, values in self.sections.items():
            kind, _, name = section.partition(":")
            if kind != "destination":
                continue
            where = f"{self.section_file[section]}: [{section}]"
            given = values.get("prefixes")
            if given is None:
                if (section, "prefixes") in self.given:
                    continue  # given, and rejected: already said why
                self.error(f"{where}: expected prefixes = the dialled-number prefixes of the "
                           "class (digits, space separated)")
                continue
            for prefix in given.value:
                other = owner.setdefault(prefix, section)
                if other != section:
                    self.error(f"{given.file}: [{section}] prefixes = {_show(given.text, None)}:"
                               f" prefix {prefix} is already in [{other}]: expected each "
                               "prefix in one class only")
            exempt = bool(self.get(section, "exempt"))
            keys = {k: v.value for k, v in values.items() if k in CLASS_KEYS}
            if exempt and any(k in CLASS_LIMIT_KEYS for k in keys):
                self.error(f"{where}: exempt = true with {', '.join(sorted(keys))}: expected "
                           "no limits in an exempt class (its calls are never refused, hung up "
                           "or counted)")
            classes.append(DestinationClass(name, tuple(given.value), exempt, keys))
        names = {c.name: c for c in classes}
        overrides: dict[str, dict[str, dict[str, Any]]] = {}
        for section, values in self.sections.items():
            kind, _, account = section.partition(":")
            if kind != "account":
                continue
            for key, value in values.items():
                cls, dot, name = key.partition(".")
                if not dot:
                    continue
                where = f"{value.file}: [{section}] {key} = {_show(value.text, None)}"
                if cls not in names:
                    known = ", ".join(sorted(names)) or "none is configured"
                    self.error(f"{where}: no [destination:{cls}] section: expected CLASS.KEY to "
                               f"name a destination class ({known})")
                elif names[cls].exempt:
                    self.error(f"{where}: [destination:{cls}] is exempt: expected no limits "
                               "for an exempt class")
                else:
                    overrides.setdefault(account, {}).setdefault(cls, {})[name] = value.value
        return Destinations(classes, policy, accounts, overrides)

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
        if "cluster" in self.sections and url.lower().startswith("sqlite"):
            self.warnings.append(f"{self.section_file['cluster']}: [cluster] has no effect "
                                 "without a PostgreSQL [database] url (one esl-guard run per "
                                 "SQLite database)")
        journal = self.get("database", "journal") or (
            os.path.join(os.path.dirname(db_file) or ".", "journal.jsonl") if db_file
            else DEFAULT_JOURNAL)
        database = DatabaseConfig(
            url=url, auto_migrate=self.get("database", "auto_migrate"),
            fail_mode=self.get("database", "fail_mode"), journal=journal,
            queue_max=self.get("database", "queue_max"),
            poll_interval=self.get("database", "poll_interval"),
            audit_retention=self.get("database", "audit_retention"),
        )
        policy = Limits(**{k: self.get("policy", k) for k in LIMIT_KEYS})
        accounts = {
            section.partition(":")[2]: replace(
                policy, **{k: v.value for k, v in values.items() if k in LIMIT_KEYS})
            for section, values in self.sections.items() if section.startswith("account:")
        }
        self.check_detectors(policy)
        destinations = self.destinations(policy, accounts)
        notify = None
        if "notify" in self.sections:
            if self.get("notify", "webhook") is None:
                self.error(f"{self.section_file['notify']}: [notify]: expected webhook = URL")
            else:
                notify = NotifyConfig(webhook=self.get("notify", "webhook"),
                                      secret=self.get("notify", "secret"),
                                      events=self.get("notify", "events"),
                                      min_interval=self.get("notify", "min_interval"))
        metrics = None
        if "metrics" in self.sections:
            host, port = self.get("metrics", "listen")
            metrics = MetricsConfig(host=host, port=port)
        if self.errors:
            return None
        return Config(
            nodes=tuple(nodes), database=database, policy=policy, accounts=accounts,
            account_variable=self.get("policy", "account_variable"),
            lock_realm=self.get("policy", "lock_realm"), metrics=metrics, notify=notify,
            cluster=ClusterConfig(failover_after=self.get("cluster", "failover_after")),
            logging=LoggingConfig(format=self.get("logging", "format"),
                                  level=self.get("logging", "level")),
            files=tuple(self.files), warnings=tuple(dict.fromkeys(self.warnings)),
            sources={f"[{s}] {k}": v.file for s, vals in self.sections.items()
                     for k, v in vals.items()},
            destinations=destinations,
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
