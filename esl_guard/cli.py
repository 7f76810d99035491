"""The `esl-guard` command line.  Every operator-facing error is one clear line and a non-zero
exit code: 1 for a failed operation, 2 for bad usage or a bad conf file, 141 when the reader of
the output went away (`esl-guard audit | head`), like any tool killed by SIGPIPE.

Adding a subcommand: register its parser in `_parser()` and its function in `COMMANDS`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from esl_guard import __version__
from esl_guard.model import CLAUSE_NAMES, ActionKind, Rule
from esl_guard.render import audit_table, iso, locks_table

DEFAULT_CONF = "/etc/esl-guard/esl-guard.conf"
#: `esl-guard example WHAT`: files shipped in the package (esl_guard/share/).
EXAMPLES = {"conf": "esl-guard.conf", "unit": "esl-guard.service",
            "dialplan": "dialplan-locked-accounts.xml"}


class CLIError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="esl-guard", description="Enforce call limits on FreeSWITCH "
                                "over its event socket.", epilog="`esl-guard help COMMAND` or "
                                "`esl-guard COMMAND --help` shows a command's options.  "
                                "ESL_GUARD_DEBUG=1 turns an internal error's one-line message "
                                "into a traceback.")
    p.add_argument("--version", action="version", version=f"esl-guard {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:]
                              + ".")

    def conf(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", default=DEFAULT_CONF, metavar="PATH",
                        help=f"conf file (default {DEFAULT_CONF}); conf.d/*.conf beside it is "
                        "read too.  A directory: its *.conf, then its conf.d/*.conf")

    def utc(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--utc", action="store_true",
                        help="show times in UTC (...Z) instead of local time with its offset")

    sp = command("run", "run the daemon in the foreground (logs to stderr)")
    conf(sp)
    sp = command("check-config", "validate the conf files; exit 0 when valid")
    conf(sp)
    sp = command("demo", "run the daemon against the built-in FreeSWITCH simulator")
    sp.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    sp = command("lock", "lock an account: hang up its calls and refuse new ones")
    sp.add_argument("account")
    conf(sp)
    sp.add_argument("--for", dest="duration", metavar="DURATION",
                    help="how long (90s, 15m, 4h, 1d); default: until unlocked")
    sp.add_argument("--reason", default="locked by operator", help="why (shown in locks/audit)")
    sp = command("unlock", "unlock an account")
    sp.add_argument("account")
    conf(sp)
    sp = command("locks", "list the active locks")
    conf(sp)
    utc(sp)
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp = command("audit", "show the audit trail (oldest first), filtered")
    conf(sp)
    utc(sp)
    sp.add_argument("--account", help="only this account")
    sp.add_argument("--kind", action="append",
                    choices=[*(k.value for k in ActionKind), "role"],
                    help="only this kind of row (repeat for several)")
    sp.add_argument("--rule", action="append", choices=[r.value for r in Rule],
                    help="only rows of this rule (repeat for several)")
    sp.add_argument("--since", metavar="WHEN", help="only rows from WHEN on: a duration back "
                    "from now (1h, 7d) or an ISO 8601 time (2026-11-29T08:00, local unless it "
                    "has a zone)")
    sp.add_argument("--until", metavar="WHEN", help="only rows before WHEN (same forms as "
                    "--since)")
    sp.add_argument("--limit", type=_positive, metavar="N", help="only the N most recent rows")
    sp.add_argument("--clause", action="append", choices=CLAUSE_NAMES,
                    help="only decisions under this clause of the policy (repeat for several)")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp = command("status", "daemon state, nodes, active calls, busiest accounts, locks, "
                 "recent actions; with ACCOUNT, that account")
    sp.add_argument("account", nargs="?", metavar="ACCOUNT",
                    help="one account: live calls by node and destination class, each window "
                    "against its limit, its lock, its last decisions")
    conf(sp)
    utc(sp)
    sp.add_argument("--json", action="store_true", help="the same as JSON (\"source\": \"live\" "
                    "when the daemon answered, \"stored\" for its last stored report)")
    sp = command("db", "database maintenance")
    dbsub = sp.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    dbsub.required = True
    up = dbsub.add_parser("upgrade", help="bring the schema to the newest revision")
    conf(up)
    from esl_guard.replay import cli as replay_cli
    replay_cli.add_parser(sub)
    sp = command("example", "print a file shipped with esl-guard: the example conf, the "
                 "systemd unit or the dialplan snippet")
    sp.add_argument("what", choices=sorted(EXAMPLES), help="which file")
    sp.add_argument("-c", "--config", metavar="CONF", help="dialplan: for this conf (an "
                    "extension setting ${esl_guard_class} from its destination classes, and "
                    "its exempt numbers as the emergency numbers)")
    sp = command("help", "show the help of esl-guard or of one command")
    sp.add_argument("topic", nargs="?", metavar="COMMAND", help="a command")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _load(path: str) -> Any:
    from esl_guard.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise CLIError(str(exc), code=2) from None


def _store(config: Any, *, migrate: bool = True, create: bool = True) -> Any:
    """The conf's database.  `create=False` (read-only commands): a missing SQLite file is an
    error rather than an empty file created by this user (which the daemon, running as
    another user, may then be unable to write)."""
    from esl_guard.store import Store

    path = _sqlite_path(config.database.url)
    new_file = path is not None and not path.exists()
    if new_file and not create:
        raise CLIError(f"no database at {path} yet: the daemon creates it when it first starts "
                       "(or run `esl-guard db upgrade -c FILE` as the daemon's user)")
    store = Store(config.database.url)
    if store.revision() is None:
        if not (migrate and config.database.auto_migrate):
            raise CLIError("the database has no esl-guard schema yet: run "
                           "`esl-guard db upgrade -c FILE`")
        store.upgrade()
    if new_file and path is not None:
        _warn_foreign_owner(path)
    return store


def _sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL; None for PostgreSQL and in-memory SQLite."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # Store() reports the bad URL
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def _warn_foreign_owner(path: Path) -> None:
    """The database file was just created by this command.  The daemon runs as the user who
    owns the state directory (systemd's StateDirectory=): if that is not us, say so, or the
    daemon will fail to write its own database."""
    if not hasattr(os, "geteuid"):
        return
    try:
        dir_owner = path.parent.stat().st_uid
    except OSError:
        return
    me = os.geteuid()
    if dir_owner == me:
        return
    print(f"warning: created the database {path} as {_user(me)}, but its directory belongs to "
          f"{_user(dir_owner)} (the daemon's user?): the daemon cannot write it until you run "
          f"`chown {_user(dir_owner)}: {path}`", file=sys.stderr)


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _when(option: str, text: str, now: float) -> float:
    """--since/--until: a duration back from now, or an ISO 8601 time (local if no zone)."""
    import datetime as dt

    from esl_guard.config import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(f"{option} {text}: expected a duration (90s, 15m, 4h, 7d) or an ISO 8601 "
                       "time (2026-11-29T08:00 or 2026-11-29T08:00:00+01:00)", code=2) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return moment.timestamp()


def _account(name: str) -> str:
    from esl_guard.safety import describe_account, is_safe_account

    if not is_safe_account(name):
        raise CLIError(f"invalid account {describe_account(name)}: expected 1-64 characters "
                       "from A-Z a-z 0-9 _ . @ + - (starting with a letter or digit)", code=2)
    return name


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    nodes = ", ".join(f"{n.name} ({n.host}:{n.port})" for n in config.nodes)
    classes = ", ".join(f"{c.name}{' (exempt)' if c.exempt else ''}"
                        for c in config.destinations.classes.values()) or "none"
    print(f"{', '.join(config.files)}: OK; nodes: {nodes}; {len(config.accounts)} account "
          f"override(s); destination classes: {classes}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from esl_guard.daemon import run

    return run(args.config, config)


def cmd_lock(args: argparse.Namespace) -> int:
    from esl_guard.config import parse_duration

    account = _account(args.account)
    until = None
    if args.duration is not None:
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            raise CLIError(f"--for {args.duration}: {exc}", code=2) from None
        until = time.time() + seconds
    reason = " ".join(args.reason.split())[:500] or "locked by operator"
    store = _store(_load(args.config))
    lock = store.manual_lock(account, until=until, reason=reason, now=time.time())
    print(f"locked {lock.account} until {iso(lock.until)}: {lock.reason}")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    account = _account(args.account)
    store = _store(_load(args.config))
    lock = store.manual_unlock(account, now=time.time())
    if lock is not None:
        print(f"unlocked {account}")
        return 0
    # The daemon may hold a lock it has not written yet (its database link down, a busy
    # writer): the request is recorded and ends that lock too, in the daemon and when written.
    raise CLIError(f"{account} is not locked (no lock in the database); the unlock is "
                   "recorded, so a lock the daemon decided and has not written yet ends too")


def cmd_locks(args: argparse.Namespace) -> int:
    store = _store(_load(args.config), create=False)
    locks = store.active_locks(time.time())
    if args.json:
        for lk in locks:
            print(json.dumps({"account": lk.account, "since": iso(lk.since, utc=True),
                              "until": None if lk.until is None else iso(lk.until, utc=True),
                              "since_epoch": lk.since, "until_epoch": lk.until,
                              "reason": lk.reason, "origin": lk.origin, "lock_id": lk.lock_id}))
        return 0
    if not locks:
        print("no active locks")
        return 0
    for line in locks_table(locks, utc=args.utc):
        print(line)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    now = time.time()
    since = _when("--since", args.since, now) if args.since is not None else None
    until = _when("--until", args.until, now) if args.until is not None else None
    account = _account(args.account) if args.account is not None else None
    store = _store(_load(args.config), create=False)
    rows = store.audit(account=account, since=since, until=until, kinds=args.kind,
                       rules=args.rule, limit=args.limit, clauses=args.clause)
    if args.json:
        for row in rows:
            doc = dict(row)
            doc["time"] = iso(row["time"], utc=True, ms=True)
            doc["epoch"] = row["time"]
            print(json.dumps(doc, ensure_ascii=False))
        return 0
    if not rows:
        print("no audit rows match", file=sys.stderr)
        return 0
    for line in audit_table(rows, utc=args.utc):
        print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Ask the running daemon over its control socket; when it cannot be asked, show its last
    stored report and say why and how old."""
    from esl_guard.control import ControlError, ask, socket_path
    from esl_guard.status import render_account, render_status

    config = _load(args.config)
    account = _account(args.account) if args.account is not None else None
    request = {"get": "status"} if account is None else {"get": "account", "account": account}
    live: dict[str, Any] | None = None
    unreachable = None
    try:
        live = ask(socket_path(config.database.journal), request)
    except ControlError as exc:
        unreachable = str(exc)
    store = _store(config, migrate=False, create=False)
    now = time.time()
    if account is None:
        print(render_status(store, config, as_json=args.json, now=now, utc=args.utc, live=live,
                            unreachable=unreachable))
        return 0
    from esl_guard.live import windows

    rows = [dict(w, observed="?", max=None)
            for w in windows(None, config.limits_for(account), 0.0)]
    print(render_account(store, account, as_json=args.json, now=now, utc=args.utc, live=live,
                         unreachable=unreachable, limits_rows=rows))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from esl_guard.store import Store

    store = Store(config.database.url)
    before = store.revision()
    store.upgrade()
    after = store.revision()
    print(f"database schema: {before or 'empty'} -> {after}" if before != after
          else f"database schema already at {after}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from esl_guard.replay.cli import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from esl_guard.demo import run_demo

    return run_demo(seconds=args.seconds)


def cmd_example(args: argparse.Namespace) -> int:
    from importlib.resources import files

    resource = files("esl_guard").joinpath("share", EXAMPLES[args.what])
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"this installation lacks {EXAMPLES[args.what]}: {exc}") from None
    if args.config is not None:
        if args.what != "dialplan":
            raise CLIError("-c CONF goes with `example dialplan` only", code=2)
        from esl_guard.dialplan import for_conf

        text = for_conf(text, _load(args.config).destinations)
    sys.stdout.write(text)
    return 0


def cmd_help(args: argparse.Namespace) -> int:
    parser = _parser()
    if args.topic is None:
        parser.print_help()
        return 0
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if args.topic not in sub.choices:
        raise CLIError(f"no command {args.topic!r}; commands: {', '.join(sub.choices)}", code=2)
    sub.choices[args.topic].print_help()
    return 0


COMMANDS = {"run": cmd_run, "check-config": cmd_check_config, "lock": cmd_lock,
            "unlock": cmd_unlock, "locks": cmd_locks, "audit": cmd_audit, "status": cmd_status,
            "db": cmd_db, "demo": cmd_demo, "replay": cmd_replay, "example": cmd_example,
            "help": cmd_help}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = _parser().parse_args(argv)
        finally:
            sys.stdout.flush()  # --help, --version: catch a closed pipe here, not at exit
    except BrokenPipeError:
        return _reader_gone()
    from esl_guard.store import StoreError

    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except BrokenPipeError:
        return _reader_gone()
    except CLIError as exc:
        print(f"esl-guard {args.command}: {exc}" if "\n" not in str(exc) else str(exc),
              file=sys.stderr)
        return exc.code
    except StoreError as exc:
        print(f"esl-guard {args.command}: database error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the operator gets one line, developers opt in
        if os.environ.get("ESL_GUARD_DEBUG"):
            raise
        print(f"esl-guard {args.command}: internal error: {exc.__class__.__name__}: {exc} "
              "(set ESL_GUARD_DEBUG=1 for a traceback)", file=sys.stderr)
        return 70


def _reader_gone() -> int:
    """The reader of stdout went away (`| head`): stop quietly, exit like SIGPIPE does.
    stdout now points at /dev/null so the interpreter's final flush cannot fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
