"""The `esl-guard` command line.  Every operator-facing error is one clear line and a non-zero
exit code: 1 for a failed operation, 2 for bad usage or a bad conf file."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from esl_guard import __version__

DEFAULT_CONF = "/etc/esl-guard/esl-guard.conf"


class CLIError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="esl-guard", description="Enforce call limits on FreeSWITCH "
                                "over its event socket.")
    p.add_argument("--version", action="version", version=f"esl-guard {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def conf(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", default=DEFAULT_CONF, metavar="FILE",
                        help=f"conf file (default {DEFAULT_CONF}); conf.d/*.conf beside it is read too")

    sp = sub.add_parser("run", help="run the daemon in the foreground (logs to stderr)")
    conf(sp)
    sp = sub.add_parser("check-config", help="validate the conf files; exit 0 when valid")
    conf(sp)
    sp = sub.add_parser("demo", help="run the daemon against the built-in FreeSWITCH simulator")
    sp.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    sp = sub.add_parser("lock", help="lock an account: hang up its calls and refuse new ones")
    sp.add_argument("account")
    conf(sp)
    sp.add_argument("--for", dest="duration", metavar="DURATION",
                    help="how long (90s, 15m, 4h, 1d); default: until unlocked")
    sp.add_argument("--reason", default="locked by operator", help="why (shown in locks/audit)")
    sp = sub.add_parser("unlock", help="unlock an account")
    sp.add_argument("account")
    conf(sp)
    sp = sub.add_parser("locks", help="list the active locks")
    conf(sp)
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp = sub.add_parser("audit", help="show the audit trail")
    conf(sp)
    sp.add_argument("--account", help="only this account")
    sp.add_argument("--since", metavar="DURATION", help="only the last DURATION (e.g. 1h, 7d)")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp = sub.add_parser("status", help="nodes, active calls, busiest accounts, locks, recent actions")
    conf(sp)
    sp.add_argument("--json", action="store_true", help="the raw snapshot as JSON")
    sp = sub.add_parser("db", help="database maintenance")
    dbsub = sp.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    dbsub.required = True
    up = dbsub.add_parser("upgrade", help="bring the schema to the newest revision")
    conf(up)
    from esl_guard.replay import cli as replay_cli
    replay_cli.add_parser(sub)
    return p


def _load(path: str) -> Any:
    from esl_guard.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise CLIError(str(exc), code=2) from None


def _store(config: Any, *, migrate: bool = True) -> Any:
    from esl_guard.store import Store

    store = Store(config.database.url)
    if store.revision() is None:
        if not (migrate and config.database.auto_migrate):
            raise CLIError("the database has no esl-guard schema yet: run "
                           "`esl-guard db upgrade -c FILE`")
        store.upgrade()
    return store


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "forever"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


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
    print(f"{', '.join(config.files)}: OK; nodes: {nodes}; {len(config.accounts)} account "
          "override(s)")
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
    print(f"locked {lock.account} until {_fmt_time(lock.until)}: {lock.reason}")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    account = _account(args.account)
    store = _store(_load(args.config))
    lock = store.manual_unlock(account, now=time.time())
    if lock is not None:
        print(f"unlocked {account}")
        return 0
    # The daemon may hold a lock it has not written yet (database outage, busy writer): the
    # request is recorded and ends it too; its last status tells whether it held one.
    status = store.get_status()
    if status is not None and any(lk.get("account") == account
                                  for lk in status[1].get("locks", ())):
        print(f"unlocked {account} (a lock the daemon had not written to the database yet)")
        return 0
    raise CLIError(f"{account} is not locked (no lock in the database or in the daemon's last "
                   "status); the unlock is recorded, so a lock the daemon decided in the last "
                   "moments ends too")


def cmd_locks(args: argparse.Namespace) -> int:
    store = _store(_load(args.config))
    locks = store.active_locks(time.time())
    if args.json:
        for lk in locks:
            print(json.dumps({"account": lk.account, "since": lk.since, "until": lk.until,
                              "reason": lk.reason, "origin": lk.origin, "lock_id": lk.lock_id}))
        return 0
    if not locks:
        print("no active locks")
        return 0
    print(f"{'ACCOUNT':<24} {'SINCE':<19}  {'UNTIL':<19}  {'ORIGIN':<7} REASON")
    for lk in locks:
        print(f"{lk.account:<24} {_fmt_time(lk.since):<19}  {_fmt_time(lk.until):<19}  "
              f"{lk.origin:<7} {lk.reason}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from esl_guard.config import parse_duration

    since = None
    if args.since is not None:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            raise CLIError(f"--since {args.since}: {exc}", code=2) from None
    account = _account(args.account) if args.account is not None else None
    store = _store(_load(args.config))
    rows = store.audit(account=account, since=since)
    for row in rows:
        if args.json:
            doc = dict(row)
            doc["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["time"])) + \
                f".{int((row['time'] % 1) * 1000):03d}Z"
            doc["epoch"] = row["time"]
            print(json.dumps(doc, ensure_ascii=False))
        else:
            print(f"{_fmt_time(row['time'])} {row['kind']:<9} {row['account']:<20} "
                  f"{row.get('rule') or '-':<22} {row.get('uuid') or '-':<36} "
                  f"{row.get('node') or '-'}{' DRY-RUN' if row.get('dry_run') else ''} "
                  f"{row.get('detail') or ''}")
    if not rows and not args.json:
        print("no audit rows" + (f" for {account}" if account else ""), file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from esl_guard.status import render_status

    config = _load(args.config)
    store = _store(config, migrate=False)
    print(render_status(store, config, as_json=args.json, now=time.time()))
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


COMMANDS = {"run": cmd_run, "check-config": cmd_check_config, "lock": cmd_lock,
            "unlock": cmd_unlock, "locks": cmd_locks, "audit": cmd_audit, "status": cmd_status,
            "db": cmd_db, "demo": cmd_demo, "replay": cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from esl_guard.store import StoreError

    try:
        return COMMANDS[args.command](args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
