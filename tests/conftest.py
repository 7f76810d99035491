from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esl_guard.simulator import FakeFreeSWITCH
from tests.harness import Harness

pytest_plugins = ["tests.db_fixtures"]


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
