"""Alembic environment for esl-guard.

Programmatic use (esl_guard.store.migrate): the caller passes an open connection in
``config.attributes["connection"]``.  Developer use (``alembic revision --autogenerate``,
``alembic upgrade head``) reads ``sqlalchemy.url`` from alembic.ini or ``-x url=...``.
"""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from esl_guard.store.engine import make_engine, parse_url
from esl_guard.store.models import Base

config = context.config
target_metadata = Base.metadata

# Only the alembic command line configures logging; the daemon keeps its own.
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(parse_url(_url()))  # plain postgresql:// means psycopg2
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database URL: set sqlalchemy.url in alembic.ini or pass -x url=...")
    return url


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
