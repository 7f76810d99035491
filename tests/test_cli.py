"""The command line as an operator meets it: clear messages, exit codes, never a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from esl_guard.cli import main

ROOT = Path(__file__).parent.parent


def write(tmp_path: Path, text: str, name: str = "esl-guard.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def good(tmp_path: Path, db: str | None = None) -> Path:
    return write(tmp_path, f"[freeswitch]\nport = 8021\n[database]\nurl = "
                 f"{db or 'sqlite:///' + str(tmp_path / 'g.db')}\n[policy]\nmax_concurrent_calls = 5\n")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esl_guard", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_check_config_accepts_the_shipped_conf() -> None:
    assert main(["check-config", "-c", str(ROOT / "conf" / "esl-guard.conf")]) == 0


BAD = [
    ("max_concurrent_calls = lots", "max_concurrent_calls = lots: expected a whole number >= 0"),
    ("max_call_duration = forever-ish", "max_call_duration = forever-ish: expected"),
    ("max_call_rate = 60 per minute", "max_call_rate = 60 per minute: expected"),
    ("hangup_cause = PLEASE_STOP", "hangup_cause = PLEASE_STOP: expected"),
    ("dry_run = maybe", "dry_run = maybe: expected"),
    ("lock_after = 0/1m", "lock_after = 0/1m: expected"),
    ("lock_escalation = 0.5", "lock_escalation = 0.5: expected"),
    ("max_concurent_calls = 3", "did you mean max_concurrent_calls?"),
]


@pytest.mark.parametrize("line, message", BAD)
def test_check_config_and_run_refuse_bad_values_with_the_same_message(
        tmp_path: Path, line: str, message: str) -> None:
    conf = write(tmp_path, f"[freeswitch]\nport = 8021\n[policy]\n{line}\n")
    for command in ("check-config", "run"):
        proc = run(command, "-c", str(conf))
        assert proc.returncode == 2, proc.stderr
        assert f"{conf}: [policy] " in proc.stderr and message in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


def test_every_error_is_listed_at_once(tmp_path: Path) -> None:
    conf = write(tmp_path, "[freeswitch]\nport = 99999\n[policy]\nmax_concurrent_calls = -1\n"
                 "[bogus]\nx = 1\n")
    proc = run("check-config", "-c", str(conf))
    assert proc.returncode == 2
    assert len([line for line in proc.stderr.splitlines() if line.startswith(str(conf))]) >= 3


def test_missing_conf_file(tmp_path: Path) -> None:
    proc = run("check-config", "-c", str(tmp_path / "nope.conf"))
    assert proc.returncode == 2 and "nope.conf" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message, code", [
    (["lock", "acme", "--for", "soon"], "--for soon", 2),
    (["lock", "a b/c"], "invalid account", 2),
    (["lock", "x\n\nbgapi system id"], "invalid account", 2),
    (["unlock", "nobody"], "nobody is not locked", 1),
    (["audit", "--since", "yesterday"], "--since yesterday", 2),
])
def test_bad_operator_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            args: list[str], message: str, code: int) -> None:
    conf = good(tmp_path)
    assert main([*args, "-c", str(conf)]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    conf = good(tmp_path, db="postgresql://guard:pw-s3cret@127.0.0.1:1/guard")
    for args in (["locks"], ["lock", "acme"], ["audit"], ["db", "upgrade"], ["status"]):
        proc = run(*args, "-c", str(conf))
        assert proc.returncode == 1, (args, proc.stderr)
        assert "database error" in proc.stderr and "pw-s3cret" not in proc.stderr
        assert "Traceback" not in proc.stderr


def test_help_for_every_command() -> None:
    for command in ("run", "check-config", "demo", "lock", "unlock", "locks", "audit", "status",
                    "db"):
        proc = run(command, "--help")
        assert proc.returncode == 0 and "usage: esl-guard" in proc.stdout


def test_unknown_command_is_a_usage_error() -> None:
    proc = run("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_lock_locks_and_unlock_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = good(tmp_path)
    assert main(["lock", "acme", "-c", str(conf), "--for", "1h", "--reason", "abuse"]) == 0
    assert main(["locks", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "acme" in out and "abuse" in out and "manual" in out
    assert main(["unlock", "acme", "-c", str(conf)]) == 0
    assert main(["locks", "-c", str(conf)]) == 0
    assert "no active locks" in capsys.readouterr().out


def test_permission_warning_for_a_world_readable_password(tmp_path: Path) -> None:
    conf = good(tmp_path)
    conf.write_text(conf.read_text().replace("port = 8021", "port = 8021\npassword = Secret1"))
    conf.chmod(0o644)
    proc = run("check-config", "-c", str(conf))
    assert proc.returncode == 0 and "warning:" in proc.stderr and "Secret1" not in proc.stderr


def test_run_with_dead_freeswitch_and_database_logs_clearly_without_secrets(tmp_path: Path) -> None:
    conf = write(tmp_path, "[freeswitch]\nport = 1\npassword = Sekrit99\n[database]\n"
                 "url = postgresql://guard:dbpw-x@127.0.0.1:2/guard\n"
                 f"journal = {tmp_path / 'j.jsonl'}\n[policy]\nmax_concurrent_calls = 2\n")
    proc = subprocess.Popen([sys.executable, "-m", "esl_guard", "run", "-c", str(conf)],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if "retry 2" in line:
            break
    proc.terminate()
    _, rest = proc.communicate(timeout=30)
    text = "".join(lines) + (rest or "")
    assert proc.returncode == 0
    assert "database unavailable" in text and "cannot connect to 127.0.0.1:1" in text
    assert "Traceback" not in text and "Sekrit99" not in text and "dbpw-x" not in text
