"""Engine factory: URL validation, SQLite pragmas and PostgreSQL timeouts.

Nothing here runs at import; `make_engine` is called by `Store`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from esl_guard.store.errors import StoreError

PG_CONNECT_TIMEOUT = 5  # seconds
SQLITE_BUSY_TIMEOUT_MS = 5000
# Execution option read by the SQLite "begin" hook: "IMMEDIATE" for write transactions, so
# two processes (daemon and CLI) never deadlock upgrading a read lock to a write lock.
SQLITE_BEGIN_OPTION = "esl_guard_sqlite_begin"


def safe_url(url: URL | str) -> str:
    """The URL with the password masked, for messages and logs."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<invalid database URL>"
    return url.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """Validate a database URL; raise StoreError naming the problem (never the password)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "invalid database URL (expected sqlite:///path/to/file.db or "
            "postgresql://user:password@host:port/dbname)"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and driver == "psycopg2":
        return parsed
    if backend == "sqlite" and driver == "pysqlite":
        return parsed
    raise StoreError(
        f"unsupported database URL {safe_url(parsed)}: use sqlite:///... or postgresql://..."
    )


def make_engine(url: URL) -> Engine:
    """Build (without connecting) the engine for a URL returned by `parse_url`."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT,
            "application_name": "esl-guard",
            # Notice a dead server or a dropped path instead of hanging on a read.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )


def pg_connect_args(engine: Engine) -> tuple[list[Any], dict[str, Any]]:
    """The psycopg2.connect() arguments of a PostgreSQL engine (for the LISTEN connection)."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    params = dict(cparams)
    params.setdefault("connect_timeout", PG_CONNECT_TIMEOUT)
    params.setdefault("application_name", "esl-guard-listen")
    for key, value in (("keepalives", 1), ("keepalives_idle", 30),
                       ("keepalives_interval", 10), ("keepalives_count", 3)):
        params.setdefault(key, value)
    return list(cargs), params


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:") \
            and url.query.get("uri") != "true":
        _ensure_parent_dir(Path(database).expanduser())
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _ensure_parent_dir(path: Path) -> None:
    parent = path.parent
    if parent.is_dir():
        return
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create directory {parent} for the SQLite database {path}: "
            f"{exc.strerror or exc}"
        ) from None
