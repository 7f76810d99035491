"""SQLAlchemy ORM models of the esl-guard database (schema changes need a migration)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Double, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names, so migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL; SQLite needs exactly INTEGER for an auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Lengths of the bounded string columns, used to clip incoming values.
ACCOUNT_LEN = 255
EVENT_ID_LEN = 36
KIND_LEN = 16
RULE_LEN = 32
SHORT_LEN = 64


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditEvent(Base):
    """One decision of the daemon or of an operator: the audit trail (append only)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_LEN), unique=True)
    time: Mapped[float] = mapped_column(Double())  # epoch seconds, UTC
    account: Mapped[str] = mapped_column(String(ACCOUNT_LEN))
    kind: Mapped[str] = mapped_column(String(KIND_LEN))  # violation|hangup|lock|unlock
    rule: Mapped[str | None] = mapped_column(String(RULE_LEN))
    uuid: Mapped[str | None] = mapped_column(String(SHORT_LEN))
    node: Mapped[str | None] = mapped_column(String(SHORT_LEN))
    dry_run: Mapped[bool] = mapped_column(Boolean(), default=False)
    limit_value: Mapped[str | None] = mapped_column(String(SHORT_LEN))
    observed: Mapped[str | None] = mapped_column(String(SHORT_LEN))
    detail: Mapped[str] = mapped_column(Text(), default="")
    origin: Mapped[str] = mapped_column(String(KIND_LEN))  # auto|manual|expiry|system
    clause: Mapped[str | None] = mapped_column(String(RULE_LEN))  # model.CLAUSES (0002)
    destination: Mapped[str | None] = mapped_column(String(SHORT_LEN))  # dialled number (0004)
    destination_class: Mapped[str | None] = mapped_column(String(SHORT_LEN))  # (0004)

    __table_args__ = (
        Index(None, "account", "time"),
        Index(None, "time"),
        Index(None, "kind", "time"),
        Index(None, "clause", "time"),
    )


class Lock(Base):
    """An account lock; at most one is active per account (see repository)."""

    __tablename__ = "locks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lock_id: Mapped[str] = mapped_column(String(EVENT_ID_LEN), unique=True)
    account: Mapped[str] = mapped_column(String(ACCOUNT_LEN))
    since: Mapped[float] = mapped_column(Double())
    until: Mapped[float | None] = mapped_column(Double())  # None = forever
    reason: Mapped[str] = mapped_column(Text(), default="")
    origin: Mapped[str] = mapped_column(String(KIND_LEN))  # auto|manual
    released_at: Mapped[float | None] = mapped_column(Double())
    released_by: Mapped[str | None] = mapped_column(String(SHORT_LEN))

    __table_args__ = (
        Index(None, "account", "released_at"),
        Index(None, "since"),
    )


class Unlock(Base):
    """An operator's `esl-guard unlock`: it ends every lock of the account that began at or
    before ``at``, also one the daemon decided and had not written yet (it is written later
    already released, and the daemon ends it in memory when it reads this row)."""

    __tablename__ = "unlocks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(ACCOUNT_LEN))
    at: Mapped[float] = mapped_column(Double())
    by: Mapped[str] = mapped_column(String(SHORT_LEN))

    __table_args__ = (
        Index(None, "account", "at"),
        Index(None, "at"),
    )


class CallMinutes(Base):
    """The answered interval of an ended call under a ``max_minutes`` budget (issue 12):
    the budgets' sliding windows are rebuilt from these at start-up."""

    __tablename__ = "call_minutes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_LEN), unique=True)
    account: Mapped[str] = mapped_column(String(ACCOUNT_LEN))
    destination_class: Mapped[str | None] = mapped_column(String(SHORT_LEN))
    answered: Mapped[float] = mapped_column(Double())  # epoch seconds
    ended: Mapped[float] = mapped_column(Double())

    __table_args__ = (Index(None, "ended"),)


class DaemonStatus(Base):
    """A single row (id=1): the daemon's last JSON status snapshot."""

    __tablename__ = "daemon_status"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=False)
    updated_at: Mapped[float] = mapped_column(Double())
    body: Mapped[str] = mapped_column(Text())


class ClusterMember(Base):
    """One `esl-guard run` of a group (PostgreSQL, issue 14), kept by its leadership
    connection every few seconds: what `esl-guard status` lists."""

    __tablename__ = "cluster_members"

    instance: Mapped[str] = mapped_column(String(SHORT_LEN), primary_key=True)
    host: Mapped[str] = mapped_column(String(ACCOUNT_LEN))
    pid: Mapped[int] = mapped_column(Integer())
    role: Mapped[str] = mapped_column(String(KIND_LEN))  # active|standby
    since: Mapped[float] = mapped_column(Double())  # in this role since (epoch seconds)
    started: Mapped[float] = mapped_column(Double())
    last_seen: Mapped[float] = mapped_column(Double())

    __table_args__ = (Index(None, "last_seen"),)
