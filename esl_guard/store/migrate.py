"""Alembic, driven from code: no alembic.ini is needed at runtime.

The migration scripts are the top-level ``migrations/`` directory of the source tree, shipped
in the installed package as ``esl_guard.migrations``.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from esl_guard.store.errors import StoreError

# Any constant: serialises concurrent upgrades (daemon and CLI) on PostgreSQL.
_PG_UPGRADE_LOCK_KEY = 0x65736C67  # "eslg"


def script_location() -> Path:
    """The directory holding env.py and versions/ (installed package first, then source tree)."""
    candidates: list[Path] = []
    try:
        resource = importlib.resources.files("esl_guard.migrations")
    except (ModuleNotFoundError, TypeError):
        resource = None
    if isinstance(resource, Path):
        candidates.append(resource)
    # Source checkout: esl_guard/store/migrate.py -> <repo>/migrations
    candidates.append(Path(__file__).resolve().parent.parent.parent / "migrations")
    for path in candidates:
        if (path / "env.py").is_file() and (path / "versions").is_dir():
            return path
    raise StoreError(
        "cannot find the database migrations (package esl_guard.migrations); "
        "is esl-guard installed completely?"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(connection: Connection) -> None:
    """Upgrade to head inside the caller's transaction (committed by the caller)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK_KEY})")
    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
