"""What `locks`, `audit` and `status` print (issue 16): pipes, times, filters, tables, the
daemon's state, and database files created by the wrong user."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.cli import main
from esl_guard.store import Store

ROOT = Path(__file__).parent.parent
T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z
T1 = 1_900_000_000.0  # 2030-03-17T17:46:40Z
ISO_WITH_ZONE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)")


def conf_for(tmp_path: Path) -> Path:
    conf = tmp_path / "esl-guard.conf"
    conf.write_text(f"[freeswitch]\nport = 8021\n[database]\nurl = sqlite:///{tmp_path / 'g.db'}\n"
                    f"journal = {tmp_path / 'journal.jsonl'}\n[policy]\nmax_concurrent_calls = 5\n")
    conf.chmod(0o600)
    return conf


def audit_op(t: float, account: str = "acme", kind: str = "hangup",
             rule: str | None = "max_concurrent_calls", n: int = 0) -> dict[str, object]:
    return {"op": "audit", "event_id": str(uuid.uuid4()), "time": t, "account": account,
            "kind": kind, "rule": rule, "uuid": f"{n:08d}-0000-4000-8000-000000000000",
            "node": "fs1", "dry_run": False, "limit": "2", "observed": "3",
            "detail": f"row {n}", "origin": "auto"}


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, Store]:
    conf = conf_for(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    store.upgrade()
    return conf, store


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esl_guard", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


# -- bug 1: a closed pipe ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["audit", "locks", "status"])
def test_a_reader_that_goes_away_ends_the_command_quietly(
        db: tuple[Path, Store], command: str) -> None:
    conf, store = db
    # Far more than a pipe holds (64 KiB), so the CLI is still writing when the reader leaves.
    store.apply([audit_op(T0 + i, n=i) for i in range(1500)])
    for i in range(800):
        store.manual_lock(f"acct{i}", until=None, reason="x" * 80, now=T0)
    args = [command, "-c", str(conf)]
    proc = subprocess.Popen([sys.executable, "-m", "esl_guard", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert first
    assert "Error" not in err and "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 141)  # 141: the output was cut short, as with SIGPIPE


# -- bug 6: one time convention --------------------------------------------------------------

@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is not UTC here, so local and UTC output differ."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_locks_and_audit_show_iso_times_with_their_zone(
        db: tuple[Path, Store], capsys: pytest.CaptureFixture[str], paris: None) -> None:
    conf, store = db
    store.apply([audit_op(T0)])
    store.manual_lock("acme", until=T1, reason="test", now=T0)
    for command in ("locks", "audit"):
        assert main([command, "-c", str(conf)]) == 0
        out = capsys.readouterr().out
        assert "2026-05-28T22:26:40+02:00" in out, out
        assert main([command, "-c", str(conf), "--utc"]) == 0
        out = capsys.readouterr().out
        assert "2026-05-28T20:26:40Z" in out, out
    assert main(["locks", "-c", str(conf), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[0])
    assert doc["since"] == "2026-05-28T20:26:40Z" and doc["until"] == "2030-03-17T17:46:40Z"
    assert main(["audit", "-c", str(conf), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["time"] == \
        "2026-05-28T20:26:40.000Z"


def test_every_time_status_prints_has_a_zone(db: tuple[Path, Store],
                                             capsys: pytest.CaptureFixture[str],
                                             paris: None) -> None:
    conf, store = db
    now = time.time()
    store.apply([audit_op(now - 60)])
    store.manual_lock("acme", until=now + 3600, reason="test", now=now)
    store.apply([{"op": "status", "time": now - 2, "body": {
        "time": now - 2, "started": now - 100, "version": "9.9",
        "nodes": [{"name": "fs1", "host": "127.0.0.1", "port": 8021, "connected": True,
                   "since": now - 90}]}}])
    assert main(["status", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    stamps = re.findall(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d)?\S*", out)
    assert len(stamps) >= 3, out  # node since, lock until, recent action
    assert all(ISO_WITH_ZONE.fullmatch(s) for s in stamps), stamps
    assert not re.search(r"(?<![T\d])\d\d:\d\d:\d\d(?![+\-Z.\d])", out), out  # no bare clock


# -- audit that stays useful -------------------------------------------------------------------

def test_audit_filters_by_kind_rule_until_and_limit(
        db: tuple[Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    conf, store = db
    store.apply([audit_op(T0 + 0, kind="violation", rule="max_call_rate", n=0),
                 audit_op(T0 + 10, kind="hangup", rule="max_call_rate", n=1),
                 audit_op(T0 + 20, kind="hangup", rule="max_concurrent_calls", n=2),
                 audit_op(T0 + 30, kind="lock", rule="lock_after", n=3),
                 audit_op(T0 + 40, account="other", kind="hangup", rule="max_call_rate", n=4)])

    def rows(*extra: str) -> list[str]:
        assert main(["audit", "-c", str(conf), "--json", *extra]) == 0
        return [json.loads(line)["detail"] for line in capsys.readouterr().out.splitlines()]

    assert rows("--kind", "hangup") == ["row 1", "row 2", "row 4"]
    assert rows("--kind", "hangup", "--kind", "lock") == ["row 1", "row 2", "row 3", "row 4"]
    assert rows("--rule", "max_call_rate") == ["row 0", "row 1", "row 4"]
    assert rows("--kind", "hangup", "--rule", "max_call_rate", "--account", "acme") == ["row 1"]
    until = dt.datetime.fromtimestamp(T0 + 20, dt.timezone.utc).isoformat()
    assert rows("--until", until) == ["row 0", "row 1"]
    assert rows("--since", until, "--until", "2026-05-28T20:27:15Z") == ["row 2", "row 3"]
    assert rows("--limit", "2") == ["row 3", "row 4"]
    assert rows("--kind", "hangup", "--limit", "1") == ["row 4"]


@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit"),
    (["--limit", "lots"], "--limit"),
    (["--kind", "kill"], "--kind"),
    (["--rule", "max_calls"], "--rule"),
    (["--until", "next tuesday"], "--until next tuesday: expected a duration"),
])
def test_bad_audit_filters_are_one_clear_line(db: tuple[Path, Store], args: list[str],
                                              message: str) -> None:
    conf, _ = db
    proc = cli("audit", "-c", str(conf), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_audit_prints_a_table_with_a_header_and_a_time_column(
        db: tuple[Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    conf, store = db
    store.apply([audit_op(T0, n=1), audit_op(T0 + 5, kind="lock", rule="lock_after", n=2)])
    assert main(["audit", "-c", str(conf), "--utc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "ACCOUNT", "RULE", "CLAUSE", "LIMIT", "SEEN",
                                "UUID", "NODE", "DETAIL"]
    assert lines[1].split()[:4] == ["2026-05-28T20:26:40Z", "hangup", "acme",
                                    "max_concurrent_calls"]
    assert lines[2].startswith("2026-05-28T20:26:45Z") and lines[2].endswith("row 2")
    # columns line up under their header
    col = lines[0].index("ACCOUNT")
    assert all(line[col:].startswith("acme") for line in lines[1:])


# -- bug 2: the daemon's state -----------------------------------------------------------------

def status_of(conf: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["status", "-c", str(conf), "--utc"]) == 0
    return capsys.readouterr().out.splitlines()[0]


def test_status_tells_running_stopped_and_not_reporting_apart(
        db: tuple[Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    conf, store = db
    now = time.time()
    body = {"started": now - 600, "version": "1.2.3"}
    store.apply([{"op": "status", "time": now - 3, "body": {**body, "time": now - 3}}])
    line = status_of(conf, capsys)
    assert line.startswith("daemon: running, esl-guard 1.2.3, up 10m"), line

    # a report from long ago with no stop in it: a crash
    old = now - 3600
    store.close()
    Path(str(conf.parent / "g.db")).unlink()
    store = Store(f"sqlite:///{conf.parent / 'g.db'}")
    store.upgrade()
    store.apply([{"op": "status", "time": old, "body": {**body, "started": old - 600,
                                                         "time": old}}])
    line = status_of(conf, capsys)
    stamp = dt.datetime.fromtimestamp(old, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"daemon: NOT REPORTING since {stamp} (1h00m ago)" in line, line
    assert "up 10m00s" in line and "running" not in line  # "up" stops at the last report

    # a clean stop, 2 seconds ago: stopped at once, not "running" for another 30 s
    store.apply([{"op": "status", "time": now - 2, "body": {**body, "time": now - 2,
                                                            "stopped": now - 2}}])
    line = status_of(conf, capsys)
    stamp = dt.datetime.fromtimestamp(now - 2, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert line.startswith(f"daemon: stopped at {stamp}"), line
    assert "had been up 9m58s" in line


# -- bug 3: database files of the wrong owner --------------------------------------------------

def test_read_only_commands_do_not_create_the_database(tmp_path: Path) -> None:
    conf = conf_for(tmp_path)
    for command in ("status", "locks", "audit"):
        proc = cli(command, "-c", str(conf))
        assert proc.returncode == 1, proc.stderr
        assert f"no database at {tmp_path / 'g.db'} yet" in proc.stderr
        assert not (tmp_path / "g.db").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_creating_the_database_as_another_user_than_the_state_directory_is_warned(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # the daemon's user, say
    conf = tmp_path / "esl-guard.conf"
    conf.write_text(f"[freeswitch]\nport = 8021\n[database]\nurl = sqlite:///{state / 'g.db'}\n")
    conf.chmod(0o600)
    proc = cli("lock", "acme", "-c", str(conf))
    assert proc.returncode == 0, proc.stderr
    assert f"warning: created the database {state / 'g.db'} as root" in proc.stderr
    assert f"chown {proc.stderr.split('belongs to ')[1].split()[0]}: {state / 'g.db'}" in proc.stderr
    # the second command finds the file there and says nothing more
    proc = cli("unlock", "acme", "-c", str(conf))
    assert proc.returncode == 0 and "warning" not in proc.stderr


def test_no_warning_when_the_state_directory_is_ours(tmp_path: Path) -> None:
    conf = conf_for(tmp_path)
    proc = cli("lock", "acme", "-c", str(conf))
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_demo_prints_its_audit_trail_as_the_audit_table() -> None:
    # In its own process: the demo sets up the daemon's logging for itself.
    proc = cli("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(out) if line.split()[:2] == ["TIME", "KIND"])
    first = out[header + 1].split()
    assert ISO_WITH_ZONE.fullmatch(first[0]) and first[1] in ("violation", "hangup"), first
