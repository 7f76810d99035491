"""The example conf (``conf/esl-guard.conf``, shipped as ``esl-guard example conf``) and the
settings reference (``docs/settings.md``), both generated from :data:`SETTINGS`: every key, its
default and its description come from the table, so the files cannot disagree with the code.
This module only adds presentation: the value an example line shows, whether it is active, and
prose around the keys.  ``tests/test_reference.py`` fails when a committed file drifts.

Regenerate both: ``python -m esl_guard.config.reference --write``.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from esl_guard.config.settings import SETTINGS, Setting

WIDTH = 99
ROOT = Path(__file__).resolve().parent.parent.parent
CONF = Path("conf/esl-guard.conf")
REFERENCE = Path("docs/settings.md")


@dataclass(frozen=True)
class Shown:
    """How a key appears in the example conf: ``value`` (default: its default), ``active``
    (an uncommented line), ``before``/``after``: comment lines around it."""

    value: str | None = None
    active: bool = False
    before: str = ""
    after: str = ""


HEADER = """\
esl-guard configuration.  Copy to /etc/esl-guard/esl-guard.conf, then
  chown root:esl-guard /etc/esl-guard/esl-guard.conf && chmod 640 /etc/esl-guard/esl-guard.conf
because it may hold the event socket password.
Generated from the settings table (esl_guard/config/settings.py); docs/settings.md lists the
same keys.

Files read, later ones overriding earlier ones key by key:
  /etc/esl-guard/esl-guard.conf, then /etc/esl-guard/conf.d/*.conf in name order.
Syntax: `key = value`; comments start with ; or # (inline comments need a space
before them).  Keys are case-insensitive.  Nothing is interpolated, so % is literal.
Indented lines continue the previous value: do not indent keys.
Durations: 90 (seconds), 90s, 500ms, 1.5s, 15m, 4h, 1d.  Rates: N/DURATION (60/1m, 3/60).
A key shown commented out has the value shown as its default, or is off.
Any mistake rejects the whole file with one line per problem; on reload (SIGHUP) the
running policy stays in force until the files are fixed."""

#: section -> (header line as written, its comment, prose after its keys)
SECTIONS: dict[str, tuple[str, str, str]] = {
    "freeswitch": ("[freeswitch]", "one FreeSWITCH.  For several: [freeswitch:NAME] sections.",
                   "A second FreeSWITCH (each node needs its own host:port):\n"
                   "[freeswitch:edge2]\nhost = 10.0.0.12\n"
                   "password_file = /etc/esl-guard/edge2-password"),
    "database": ("[database]", "", ""),
    "policy": ("[policy]", "applies to every account",
               "Overrides for one account: any [policy] key except account_variable,\n"
               "lock_realm and inbound_contexts.  `off` (or `none`) turns a limit that can\n"
               "be off (max_*, lock_after, lock_duration_max, ...) off for it.\n"
               "[account:acme]\nmax_concurrent_calls = 2\nmax_call_rate = off"),
    "destination": (";[destination:satellite]", "a destination class: [destination:NAME]",
                    "Destination classes: calls whose dialled number (Caller-Destination-Number, a\n"
                    "leading + ignored) starts with one of the prefixes (digits; the longest match\n"
                    "wins; each prefix in one class only).  A class's limits apply IN ADDITION to\n"
                    "the account's (a premium call counts in both); they are per account: each\n"
                    "account may make max_concurrent_calls calls to the class.  Keys: the limits\n"
                    "and detectors of [policy] marked for classes in docs/settings.md\n"
                    "(max_concurrent_calls, max_call_rate, max_call_duration, max_minutes,\n"
                    "max_distinct_destinations ... warn_only), and in [account:NAME]\n"
                    "CLASS.KEY = VALUE for an account's own limit for a class\n"
                    "(premium.max_concurrent_calls = 3).\n"
                    "[destination:premium]\nprefixes = 1900 1976 44871 44872 44873 882 883\n"
                    "max_concurrent_calls = 1\nmax_call_rate = 5/1h\nmax_call_duration = 10m\n"
                    "max_minutes = 30/1d\n\n"
                    "[destination:international]\nprefixes = 00 011\nmax_concurrent_calls = 4"),
    "notify": (";[notify]", "tell the operator: one JSON POST per event (absent = no webhook)",
               ""),
    "metrics": (";[metrics]", "Prometheus metrics; absent = no metrics endpoint", ""),
    "cluster": (";[cluster]", "high availability, PostgreSQL only (README)",
                "Several `esl-guard run` with this conf and a PostgreSQL url form a group: one\n"
                "active, the others hot standby."),
    "logging": ("[logging]", "", ""),
}

SHOWN: dict[str, Shown] = {
    "host": Shown(active=True),
    "port": Shown(active=True),
    "password": Shown(before="The event socket password.  Give at most one of:"),
    "password_file": Shown(value="/etc/esl-guard/esl-password", after="chmod 600"),
    "password_env": Shown(value="ESL_PASSWORD"),
    "resync_timeout": Shown(after="it has its own short-lived connection; a failed one is "
                            "retried within seconds"),
    "node_lost_after": Shown(after="its next resync adopts the calls still up"),
    "url": Shown(active=True, before="SQLAlchemy URL: sqlite or postgresql only.  For "
                 "PostgreSQL:\n  postgresql+psycopg2://esl_guard:SECRET@db.example.net/esl_guard"),
    "fail_mode": Shown(after="audit rows are journaled until the database answers"),
    "journal": Shown(value="/var/lib/esl-guard/journal.jsonl"),
    "lock_realm": Shown(after="the dialplan checks ${hash(select/esl_guard/${accountcode})}; "
                        "the admission gate (next call over a limit) is in realm "
                        "admit_<lock_realm> (see esl-guard example dialplan)"),
    "max_concurrent_calls": Shown(value="20", active=True),
    "max_call_duration": Shown(value="4h", active=True),
    "max_call_rate": Shown(value="60/1m", active=True),
    "hangup_cause": Shown(active=True, after="CALL_REJECTED is SIP 603, OUTGOING_CALL_BARRED "
                          "is SIP 403"),
    "dry_run": Shown(active=True),
    "lock_after": Shown(value="3/10m"),
    "lock_escalation": Shown(value="2", after="2: each lock twice as long as the one before "
                             "(earlier locks of the last 30 days)"),
    "lock_duration_max": Shown(value="7d"),
    "prefixes": Shown(value="881"),
    "max_minutes": Shown(value="600/1d", after="the call that reaches N is hung up at that "
                         "second; new calls are refused while the window is full"),
    "max_distinct_destinations": Shown(
        value="30/10m", before="Detectors: one per clause of the Acceptable Usage Policy "
        "(absent = off).  Each violation is handled like the limits above (hangup, counts "
        "toward lock_after) unless warn_only lists it."),
    "max_short_calls": Shown(value="20/10m", after="when over, new calls are refused"),
    "max_sequential_destinations": Shown(value="5", after="5551000, 5551001, ...: the 6th "
                                         "is hung up"),
    "max_source_ips": Shown(value="3/1h"),
    "caller_id_allowed": Shown(value="+4420* 02079460000"),
    "max_inbound_concurrent_calls": Shown(value="2", after="needs inbound_contexts"),
    "inbound_contexts": Shown(value="public"),
    "warn_only": Shown(value="max_short_calls"),
    "webhook": Shown(value="https://hooks.example.net/esl-guard"),
    "secret": Shown(value="CHANGE-ME"),
    "listen": Shown(after="HOST:PORT, IPv6 as [::1]:9464"),
    "format": Shown(active=True),
    "level": Shown(active=True),
}


#: shipped active after the destination classes: emergency calls are never touched (issue 12)
EMERGENCY = """\
; Emergency calls are never refused, hung up or counted by esl-guard, not even for a locked
; account or with fail_mode = closed; each one is logged and audited (kind exempt).  In an
; exempt class each "prefix" must be the WHOLE dialled number (a prefix would let a locked
; account dial 1129... free of every limit).  A STARTING POINT: adapt it to the countries you
; serve and to how your customers dial (keep conf/dialplan-locked-accounts.xml in step).
;   112 EU/GSM   911 North America   999 UK, Ireland, Hong Kong   000 Australia
;   110 119 Japan, China, Germany (110 police)   111 New Zealand   100 101 102 108 India
;   113 118 Italy, Norway   15 17 18 France   190 192 193 Brazil   995 Singapore
;   997 998 Poland   10111 South Africa
[destination:emergency]
prefixes = 112 911 999 000 110 119 111 100 101 102 108 113 118 15 17 18 190 192 193 995 997 998 10111
exempt = true"""


def _comment(text: str, indent: str = "") -> list[str]:
    out = []
    for para in text.split("\n"):
        wrapped = textwrap.wrap(para, WIDTH - 2 - len(indent)) or [""]
        out += [f"; {indent}{line}".rstrip() for line in wrapped]
    return out


def _default_note(s: Setting, shown: str | None) -> str:
    if s.default is None:
        return " (absent = off)" if s.off else ""
    if shown != s.default:
        return f" (default {s.default})"
    return ""


def _key_lines(s: Setting, column: int) -> list[str]:
    how = SHOWN.get(s.name, Shown())
    value = how.value if how.value is not None else s.default
    out = _comment(how.before) if how.before else []
    if value is None:  # no default and no example: shown without a value
        value = ""
    line = f"{'' if how.active else ';'}{s.name} = {value}".rstrip()
    text = s.doc + _default_note(s, value)
    if how.after:
        text += "; " + how.after
    pad = max(column, len(line) + 1)
    room = WIDTH - pad - 2
    chunks = textwrap.wrap(text, room) or [""]
    out.append(f"{line.ljust(pad)}; {chunks[0]}")
    out += [f";{' ' * (pad - 1)}; {c}" for c in chunks[1:]]
    return out


def _section_keys(section: str) -> list[Setting]:
    return [s for s in SETTINGS.values() if s.section == section]


def example_conf() -> str:
    """The example conf: every key of :data:`SETTINGS`, in table order, by section."""
    out = _comment(HEADER)
    for section, (header, note, prose) in SECTIONS.items():
        keys = _section_keys(section)
        column = 28 if section != "policy" else 34
        out.append("")
        out.append(f"{header.ljust(column)}; {note}" if note else header)
        for s in keys:
            out += _key_lines(s, column)
        if prose:
            out.append("")
            out += [f";{line}" if line.startswith("[") or "=" in line or not line else f"; {line}"
                    for line in prose.split("\n")]
        if section == "destination":
            out += ["", *EMERGENCY.split("\n")]
    return "\n".join(out) + "\n"


def settings_markdown() -> str:
    """The settings reference: one table per section."""
    out = ["# Settings reference", "",
           "Generated from `esl_guard/config/settings.py` (`SETTINGS`, the one source of every "
           "key and default) by `python -m esl_guard.config.reference --write`; do not edit by "
           "hand. `conf/esl-guard.conf` (`esl-guard example conf`) has the same keys with "
           "examples. A key that can be `off` also accepts `none`.", ""]
    for section in SECTIONS:
        keys = _section_keys(section)
        title = f"[{section}]"
        if section == "policy":
            title += " (and [account:NAME] where marked)"
        if section == "freeswitch":
            title += " (and [freeswitch:NAME])"
        out += [f"## {title}", "", "| key | default | value | description |",
                "|---|---|---|---|"]
        for s in keys:
            default = "*(off)*" if s.default is None and s.off else (
                "*(none)*" if s.default is None else f"`{s.default}`")
            kind = s.kind.replace("|", " or ") + (", or `off`" if s.off else "")
            doc = s.doc.replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")
            where = " Also in `[account:NAME]`." if "account" in s.sections else ""
            if "destination" in s.sections and section != "destination":
                where += " Also in `[destination:NAME]` (and as `CLASS.KEY` in an account)."
            secret = " Never shown in messages." if s.secret else ""
            out.append(f"| `{s.name}` | {default} | {kind} | {doc}.{where}{secret} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate the example conf and the settings "
                                "reference from the settings table.")
    p.add_argument("--write", action="store_true", help=f"write {CONF} and {REFERENCE} under "
                   "the source tree")
    p.add_argument("what", nargs="?", choices=("conf", "reference"), default="conf",
                   help="print this one (without --write)")
    args = p.parse_args(argv)
    if args.write:
        (ROOT / CONF).write_text(example_conf())
        (ROOT / REFERENCE).write_text(settings_markdown())
        print(f"wrote {CONF} and {REFERENCE}")
        return 0
    sys.stdout.write(example_conf() if args.what == "conf" else settings_markdown())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
