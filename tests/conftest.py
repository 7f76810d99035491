from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness

pytest_plugins = ["tests.db_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a module compiled by mypyc (setup.py) that is older than its source:
    Python would import the stale compiled one."""
    root = Path(__file__).resolve().parent.parent
    stale = [str(py.relative_to(root)) for so in (root / "esl_guard").rglob("*.so")
             if (py := so.with_name(so.name.split(".")[0] + ".py")).exists()
             and py.stat().st_mtime > so.stat().st_mtime]
    if stale:
        pytest.exit(f"compiled modules older than their sources ({', '.join(sorted(stale))}): "
                    "run ./scripts/bootstrap to build them again", returncode=4)


@pytest.fixture
def fs() -> Iterator[FakeFreeSWITCH]:
    """A FreeSWITCH event-socket simulator on a free port of 127.0.0.1."""
    sim = FakeFreeSWITCH().start()
    yield sim
    sim.stop()


@pytest.fixture
def h(tmp_path: Path, fs: FakeFreeSWITCH) -> Iterator[Harness]:
    """The real daemon against ``fs``, on SQLite (tests override this for PostgreSQL)."""
    harness = Harness(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}", fs)
    yield harness
    harness.stop()
