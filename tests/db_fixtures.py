"""pytest plugin: database fixtures for the store tests.

`db_url` runs a test on SQLite and on a throwaway PostgreSQL database; `pg_url` on
PostgreSQL only; `store` is an upgraded `Store` on `db_url`.  PostgreSQL tests are skipped
when the server is unreachable, unless ESL_GUARD_REQUIRE_PG=1 (then they fail).
The server defaults to postgresql://postgres@127.0.0.1:5432/test (ESL_GUARD_TEST_PG_URL).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from esl_guard.store import Store

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: needs a PostgreSQL server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)


def _admin_url() -> str:
    return os.environ.get("ESL_GUARD_TEST_PG_URL", DEFAULT_PG_ADMIN_URL)


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[tuple[str, str | None]]:
    """(admin URL, None) if PostgreSQL answers, else (admin URL, the error)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(_admin_url())
    try:
        conn = psycopg2.connect(
            host=url.host, port=url.port or 5432, user=url.username,
            password=url.password, dbname=url.database, connect_timeout=3,
        )
    except psycopg2.Error as exc:
        yield str(url), " ".join(str(exc).split())
        return
    conn.close()
    yield str(url), None


def _admin_connect(admin_url: str) -> Any:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=url.database, connect_timeout=3,
    )
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_url(_pg_admin: tuple[str, str | None]) -> Iterator[str]:
    """A throwaway, empty PostgreSQL database, dropped after the test."""
    from sqlalchemy.engine import make_url

    admin_url, error = _pg_admin
    url = make_url(admin_url)
    if error is not None:
        message = f"PostgreSQL not reachable at {url.host}:{url.port or 5432}: {error}"
        if os.environ.get("ESL_GUARD_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = f"esl_guard_test_{uuid.uuid4().hex}"
    admin = _admin_connect(admin_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = _admin_connect(admin_url)
        try:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'esl-guard.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    from esl_guard.store import Store

    s = Store(db_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()
