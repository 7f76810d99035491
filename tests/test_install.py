"""An install that ships everything (issue 16): the wheel and the sdist carry the example conf,
the systemd unit and the dialplan snippet, `esl-guard example` prints them, `--help` covers
every command, and bootstrap rebuilds a broken venv."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from esl_guard.cli import COMMANDS, EXAMPLES, _parser, main

ROOT = Path(__file__).parent.parent
SHIPPED = {"conf": ROOT / "conf" / "esl-guard.conf",
           "unit": ROOT / "systemd" / "esl-guard.service",
           "dialplan": ROOT / "conf" / "dialplan-locked-accounts.xml"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # ESL_GUARD_PURE: what is checked here is the packaging, not the compiled hot path
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "--wheel-dir", str(out), str(ROOT)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "ESL_GUARD_PURE": "1"})
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("esl_guard-*.whl")
    return path


def test_the_wheel_ships_the_example_conf_the_unit_and_the_dialplan(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for what, source in SHIPPED.items():
            member = f"esl_guard/share/{EXAMPLES[what]}"
            assert member in names, sorted(names)
            assert zf.read(member) == source.read_bytes()


def test_the_sdist_ships_them_too(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta;"
                           " print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("esl-guard-*.tar.gz")
    with tarfile.open(path) as tf:
        for what, source in SHIPPED.items():
            member = tf.getmember(f"{path.name[:-7]}/esl_guard/share/{EXAMPLES[what]}")
            assert member.isfile()  # the file itself, not the symlink of the source tree
            extracted = tf.extractfile(member)
            assert extracted is not None and extracted.read() == source.read_bytes()
        assert any(n.endswith("/contrib/prometheus/esl-guard-alerts.yml") for n in tf.getnames())


@pytest.mark.slow
def test_a_fresh_venv_with_the_wheel_prints_the_examples(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    exe = venv / "bin" / "esl-guard"
    for what, source in SHIPPED.items():
        out = subprocess.run([str(exe), "example", what], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
        assert out.returncode == 0 and out.stdout == source.read_text(), out.stderr
    conf = tmp_path / "esl-guard.conf"
    conf.write_text(subprocess.run([str(exe), "example", "conf"], capture_output=True,
                                   text=True, check=True, cwd=tmp_path).stdout)
    conf.chmod(0o600)
    check = subprocess.run([str(exe), "check-config", "-c", str(conf)], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)
    assert check.returncode == 0 and ": OK;" in check.stdout, check.stderr


@pytest.mark.parametrize("what", sorted(EXAMPLES))
def test_example_prints_each_shipped_file(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["example", what]) == 0
    assert capsys.readouterr().out == SHIPPED[what].read_text()


def test_help_covers_every_command_with_a_one_line_summary(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    sub = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {c.dest: c.help for c in sub._choices_actions}  # type: ignore[attr-defined]
    assert set(helps) == set(COMMANDS)
    for name, summary in helps.items():
        assert summary and name in text and summary.split()[0] in text
    assert "ESL_GUARD_DEBUG" in text
    assert main(["help", "audit"]) == 0
    assert "--until" in capsys.readouterr().out
    assert main(["help"]) == 0 and "example" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from esl_guard import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"esl-guard {__version__}"


# -- bug 8: bootstrap and a broken .venv -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("broken", ["old-python", "dangling"])
def test_bootstrap_rebuilds_a_venv_whose_python_is_broken_or_unsupported(
        tmp_path: Path, broken: str) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    # a tiny project, so pip's install is quick
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny"\nversion = "1"\n[project.optional-dependencies]\ntest = []\n'
        '[tool.setuptools]\npy-modules = []\n')
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    if broken == "old-python":  # what a bootstrap with Python 3.8 leaves behind
        (bin_ / "python").write_text('#!/bin/sh\nexec python3 -c "import sys; sys.version_info '
                                     '= (3, 8, 0); exec(sys.argv[2]) if len(sys.argv) > 2 '
                                     'else None" "$@"\n'.replace("python3", sys.executable))
        (bin_ / "python").chmod(0o755)
    else:  # the interpreter it pointed to is gone
        (bin_ / "python").symlink_to(tmp_path / "gone" / "python3.8")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "bootstrap")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "bootstrap: rebuilding .venv" in proc.stderr
    version = subprocess.run([str(bin_ / "python"), "-c", "import sys; print(sys.version_info"
                              "[:2] >= (3, 10))"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "True"


def test_bootstrap_refuses_an_unsupported_python_with_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "python3.8"
    fake.write_text("#!/bin/sh\necho 3.8\nexit 1\n")
    fake.chmod(0o755)
    work = tmp_path / "repo"
    (work / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap", work / "scripts" / "bootstrap")
    proc = subprocess.run(["bash", str(work / "scripts" / "bootstrap")], cwd=work,
                          env={**os.environ, "PYTHON": str(fake)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "esl-guard needs Python >= 3.10" in proc.stderr and not (work / ".venv").exists()
