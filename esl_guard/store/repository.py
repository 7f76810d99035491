"""`Store`: every database read and write of esl-guard, as plain synchronous calls.

The daemon runs these in one dedicated native thread (see writer.py); the CLI calls them
directly.  Every failure surfaces as `StoreError` with a message safe for operators.
"""
from __future__ import annotations

import enum
import json
import logging
import select as select_mod
import threading
import time
import uuid as uuid_mod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from esl_guard.model import AuditRecord, clause_of
from esl_guard.store import migrate
from esl_guard.store.engine import (
    SQLITE_BEGIN_OPTION,
    make_engine,
    parse_url,
    pg_connect_args,
    safe_url,
)
from esl_guard.store.errors import StoreDataError, StoreError
from esl_guard.store.models import (
    ACCOUNT_LEN,
    EVENT_ID_LEN,
    KIND_LEN,
    RULE_LEN,
    SHORT_LEN,
    AuditEvent,
    CallMinutes,
    ClusterMember,
    DaemonStatus,
    Lock,
    Unlock,
)

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "esl_guard_locks"
STATUS_ROW_ID = 1


@dataclass(frozen=True, slots=True)
class LockInfo:
    lock_id: str
    account: str
    since: float
    until: float | None  # None = forever
    reason: str
    origin: str


class Store:
    """The esl-guard database (SQLite or PostgreSQL).  Constructing it does not connect."""

    def __init__(self, url: str) -> None:
        parsed = parse_url(url)
        self.url = safe_url(parsed)  # password hidden: safe to log
        self._engine = make_engine(parsed)
        self._dialect = parsed.get_backend_name()
        self._listen_conn: Any = None
        self._listen_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def is_postgresql(self) -> bool:
        return self._dialect == "postgresql"

    # -- schema -------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent, concurrent-safe)."""
        with self._guard("upgrading the database schema"), self._write_tx() as conn:
            migrate.upgrade(conn)

    def revision(self) -> str | None:
        """The schema revision of the database; None when the schema is absent."""
        with self._guard("reading the schema revision"), self._engine.connect() as conn:
            return migrate.current_revision(conn)

    def ping(self) -> None:
        with self._guard("connecting to the database"), self._engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # -- writes -------------------------------------------------------------------------

    def apply(self, ops: list[dict[str, Any]]) -> None:
        """Apply a batch of ops in one transaction.  Replaying an op changes nothing.

        Raises StoreDataError when an op is malformed or rejected by the database (retrying
        it is pointless), StoreError for anything else.
        """
        if not ops:
            return
        with self._guard("writing to the database"), self._write_tx() as conn:
            for op in ops:
                self._apply_op(conn, op)

    def prune_audit(self, before: float, batch: int = 5000) -> int:
        """Delete up to ``batch`` audit rows older than ``before`` (epoch seconds), the oldest
        first, in one short transaction; returns how many (``batch``: call again).  The
        ``time`` index finds them; locks and their history are kept."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        oldest = (select(AuditEvent.id).where(AuditEvent.time < before)
                  .order_by(AuditEvent.time, AuditEvent.id).limit(batch))
        with self._guard("deleting old audit rows"), self._write_tx() as conn:
            result = conn.execute(delete(AuditEvent).where(AuditEvent.id.in_(oldest)))
        return int(result.rowcount or 0)

    def manual_lock(
        self, account: str, *, until: float | None, reason: str, now: float
    ) -> LockInfo:
        """Lock an account (operator command): lock row + audit row, then notify."""
        if not account:
            raise ValueError("account must not be empty")
        if until is not None and until <= now:
            raise ValueError("until must be in the future")
        lock_op = {
            "op": "lock", "lock_id": str(uuid_mod.uuid4()), "account": account,
            "since": now, "until": until, "reason": reason, "origin": "manual",
        }
        detail = "locked forever" if until is None else f"locked until {_iso(until)}"
        if reason:
            detail += f": {reason}"
        with self._guard("locking the account"), self._write_tx() as conn:
            info = self._apply_lock(conn, lock_op)
            self._apply_audit(conn, _manual_audit("lock", account, now, detail))
            self._notify(conn)
        assert info is not None  # a fresh uuid4 cannot exist already
        return info

    def manual_unlock(self, account: str, *, now: float) -> LockInfo | None:
        """Release the active lock of an account (operator command); None if it had none.

        The request itself is recorded too (table ``unlocks``): it also ends a lock the daemon
        decided at or before ``now`` and has not written yet, both here (that lock is written
        already released) and in the daemon (which reads it with :meth:`unlocks_since`)."""
        with self._guard("unlocking the account"), self._write_tx() as conn:
            released = self._release(conn, account, now, "manual")
            for info in released:
                detail = f"unlocked (lock {info.lock_id} since {_iso(info.since)})"
                self._apply_audit(conn, _manual_audit("unlock", account, now, detail))
            conn.execute(self._insert(Unlock).values(
                account=_clip(account, ACCOUNT_LEN), at=now, by="manual"))
            self._notify(conn)
        return released[0] if released else None

    def notify(self) -> None:
        """Tell listening daemons that locks changed (PostgreSQL NOTIFY; elsewhere a no-op)."""
        if not self.is_postgresql:
            return
        with self._guard("sending a lock notification"), self._engine.begin() as conn:
            self._notify(conn)

    # -- reads --------------------------------------------------------------------------

    def active_locks(self, now: float) -> list[LockInfo]:
        stmt = (
            select(Lock)
            .where(Lock.released_at.is_(None), or_(Lock.until.is_(None), Lock.until > now))
            .order_by(Lock.account, Lock.since, Lock.id)
        )
        with self._guard("reading the locks"), self._engine.connect() as conn:
            return [_lock_info(row) for row in conn.execute(stmt)]

    def lock_counts_since(self, since: float) -> dict[str, int]:
        stmt = (
            select(Lock.account, func.count(Lock.id))
            .where(Lock.since >= since)
            .group_by(Lock.account)
        )
        with self._guard("counting locks"), self._engine.connect() as conn:
            return {account: int(count) for account, count in conn.execute(stmt)}

    def lock_times_since(self, since: float, before: float | None = None) -> dict[str, list[float]]:
        """When each account's automatic locks began (epoch seconds, oldest first), for those
        that began at or after ``since`` and, with ``before``, earlier than it: the escalation
        history (``lock_escalation`` counts the daemon's own locks)."""
        stmt = select(Lock.account, Lock.since).where(Lock.origin == "auto", Lock.since >= since)
        if before is not None:
            stmt = stmt.where(Lock.since < before)
        stmt = stmt.order_by(Lock.since, Lock.id)
        out: dict[str, list[float]] = {}
        with self._guard("reading the lock history"), self._engine.connect() as conn:
            for account, t in conn.execute(stmt):
                out.setdefault(account, []).append(float(t))
        return out

    def lock_window_events(self, since: float,
                           before: float | None = None) -> list[tuple[str, float, str]]:
        """What the ``lock_after`` windows are made of, in the order it happened: violations
        (not dry run) and ``lock_after`` decisions (which empty the window), as
        (account, time, kind), from ``since`` and, with ``before``, earlier than it."""
        stmt = select(AuditEvent.account, AuditEvent.time, AuditEvent.kind).where(
            AuditEvent.time >= since,
            or_(and_(AuditEvent.kind == "violation", AuditEvent.dry_run.is_(False)),
                and_(AuditEvent.kind == "lock", AuditEvent.rule == "lock_after")))
        if before is not None:
            stmt = stmt.where(AuditEvent.time < before)
        stmt = stmt.order_by(AuditEvent.time, AuditEvent.id)
        with self._guard("reading violations"), self._engine.connect() as conn:
            return [(account, float(t), kind) for account, t, kind in conn.execute(stmt)]

    def unlocks_since(self, since: float) -> list[tuple[str, float]]:
        """Operators' unlock requests at or after ``since``: (account, time), oldest first."""
        stmt = select(Unlock.account, Unlock.at).where(Unlock.at >= since).order_by(Unlock.at,
                                                                                       Unlock.id)
        with self._guard("reading unlock requests"), self._engine.connect() as conn:
            return [(account, float(t)) for account, t in conn.execute(stmt)]

    def minutes_since(self, since: float, before: float | None = None
                      ) -> list[tuple[str, str | None, float, float]]:
        """Answered intervals of ended calls under a ``max_minutes`` budget that ended after
        ``since`` (and, with ``before``, before it): (account, destination class, answered,
        ended), epoch seconds, oldest end first."""
        stmt = select(CallMinutes.account, CallMinutes.destination_class, CallMinutes.answered,
                      CallMinutes.ended).where(CallMinutes.ended > since)
        if before is not None:
            stmt = stmt.where(CallMinutes.ended < before)
        stmt = stmt.order_by(CallMinutes.ended, CallMinutes.id)
        with self._guard("reading call minutes"), self._engine.connect() as conn:
            return [(account, cls, float(a), float(e)) for account, cls, a, e in conn.execute(stmt)]

    def violations_since(self, since: float) -> list[tuple[str, float]]:
        stmt = (
            select(AuditEvent.account, AuditEvent.time)
            .where(
                AuditEvent.kind == "violation",
                AuditEvent.dry_run.is_(False),
                AuditEvent.time >= since,
            )
            .order_by(AuditEvent.time, AuditEvent.id)
        )
        with self._guard("reading violations"), self._engine.connect() as conn:
            return [(account, float(t)) for account, t in conn.execute(stmt)]

    def audit(
        self, *, account: str | None = None, since: float | None = None,
        until: float | None = None, kinds: Sequence[str] | None = None,
        rules: Sequence[str] | None = None, limit: int | None = None,
        clauses: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Audit rows ordered by time then id, `since` <= time < `until`, of the given kinds,
        rules and policy clauses (None: any); with `limit`, the most recent `limit` of them."""
        stmt = select(AuditEvent)
        if account is not None:
            stmt = stmt.where(AuditEvent.account == account)
        if clauses:
            stmt = stmt.where(AuditEvent.clause.in_(list(clauses)))
        if since is not None:
            stmt = stmt.where(AuditEvent.time >= since)
        if until is not None:
            stmt = stmt.where(AuditEvent.time < until)
        if kinds:
            stmt = stmt.where(AuditEvent.kind.in_(list(kinds)))
        if rules:
            stmt = stmt.where(AuditEvent.rule.in_(list(rules)))
        if limit is not None:
            stmt = stmt.order_by(AuditEvent.time.desc(), AuditEvent.id.desc()).limit(limit)
        else:
            stmt = stmt.order_by(AuditEvent.time, AuditEvent.id)
        with self._guard("reading the audit trail"), self._engine.connect() as conn:
            rows = [_audit_dict(row) for row in conn.execute(stmt)]
        if limit is not None:
            rows.reverse()
        return rows

    def members(self) -> list[dict[str, Any]]:
        """The instances of the group (PostgreSQL, issue 14), most recently seen first; [] on
        SQLite (one instance) or a schema older than 0005."""
        if not self.is_postgresql:
            return []
        stmt = select(ClusterMember).order_by(ClusterMember.last_seen.desc())
        with self._guard("reading the group's instances"), self._engine.connect() as conn:
            if "cluster_members" not in conn.dialect.get_table_names(conn):
                return []
            return [{"instance": r.instance, "host": r.host, "pid": r.pid, "role": r.role,
                     "since": r.since, "started": r.started, "last_seen": r.last_seen}
                    for r in conn.execute(stmt)]

    def get_status(self) -> tuple[float, dict[str, Any]] | None:
        stmt = select(DaemonStatus.updated_at, DaemonStatus.body).where(
            DaemonStatus.id == STATUS_ROW_ID
        )
        with self._guard("reading the daemon status"), self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        try:
            body = json.loads(row.body)
        except ValueError:
            raise StoreError("the daemon status in the database is not valid JSON") from None
        return float(row.updated_at), body

    # -- change notifications -------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Block (a native thread) up to `timeout` s for a lock change made elsewhere.

        PostgreSQL: LISTEN on a dedicated connection kept open between calls.  Returns True
        when a notification arrived, and also at once when the listen connection was (re)opened
        by this call, since changes made while not listening were missed: reload then.
        Raises StoreError (and reconnects on the next call) when the connection fails.
        SQLite: sleeps `timeout` and returns False (poll `active_locks` instead).
        """
        if not self.is_postgresql:
            time.sleep(max(0.0, timeout))
            return False
        import psycopg2  # only needed with PostgreSQL

        with self._listen_lock:
            try:
                if self._listen_conn is None:
                    self._listen_conn = self._open_listen()
                    return True
                conn = self._listen_conn
                deadline = time.monotonic() + max(0.0, timeout)
                conn.poll()
                while not conn.notifies:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    readable, _, _ = select_mod.select([conn], [], [], remaining)
                    if readable:
                        conn.poll()
                changed = bool(conn.notifies)
                conn.notifies.clear()
                return changed
            except (psycopg2.Error, OSError, ValueError) as exc:
                self._close_listen()
                raise StoreError(
                    f"listening for lock changes on {self.url}: {_one_line(exc)}"
                ) from exc

    def close(self) -> None:
        with self._listen_lock:
            self._close_listen()
        self._engine.dispose()

    # -- internals ----------------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except (IntegrityError, DataError) as exc:
            raise StoreDataError(f"{what}: the database rejected the data: {_reason(exc)}") \
                from exc
        except DBAPIError as exc:
            reason = _reason(exc)
            if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
                reason += " (the database schema is missing or outdated: upgrade it first)"
            raise StoreError(f"{what} ({self.url}): {reason}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"{what} ({self.url}): {_one_line(exc)}") from exc
        except CommandError as exc:
            raise StoreError(f"{what} ({self.url}): {_one_line(exc)}") from exc

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            if self._dialect == "sqlite":
                conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    def _insert(self, entity: Any) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(entity)
        return sqlite.insert(entity)

    def _notify(self, conn: Connection) -> None:
        if self.is_postgresql:
            conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")

    def _apply_op(self, conn: Connection, op: Mapping[str, Any]) -> None:
        kind = op.get("op") if isinstance(op, Mapping) else None
        if kind == "audit":
            self._apply_audit(conn, op)
        elif kind == "lock":
            self._apply_lock(conn, op)
        elif kind == "unlock":
            try:
                account, at, by = _text(op["account"]), float(op["at"]), _text(op["by"])
                lock_id = op.get("lock_id")
                lock_id = None if lock_id is None else _clip(_text(lock_id), EVENT_ID_LEN)
            except (KeyError, TypeError, ValueError) as exc:
                raise _malformed(op, exc) from None
            if lock_id is None:  # written by an older esl-guard: the account's locks
                self._release(conn, account, at, by)
            else:  # this lock only: a newer lock of the account stays
                conn.execute(update(Lock).where(Lock.lock_id == lock_id,
                                                Lock.released_at.is_(None))
                             .values(released_at=at, released_by=_clip(by, SHORT_LEN)))
        elif kind == "status":
            self._apply_status(conn, op)
        elif kind == "minutes":
            self._apply_minutes(conn, op)
        else:
            raise StoreDataError(f"unknown op {kind!r}")

    def _apply_audit(self, conn: Connection, op: Mapping[str, Any]) -> None:
        try:
            values = {
                "event_id": _clip(_text(op["event_id"]), EVENT_ID_LEN),
                "time": float(op["time"]),
                "account": _clip(_text(op["account"]), ACCOUNT_LEN),
                "kind": _clip(_text(op["kind"]), KIND_LEN),
                "rule": _opt(op.get("rule"), RULE_LEN),
                "uuid": _opt(op.get("uuid"), SHORT_LEN),
                "node": _opt(op.get("node"), SHORT_LEN),
                "dry_run": bool(op.get("dry_run", False)),
                "limit_value": _opt(op.get("limit"), SHORT_LEN),
                "observed": _opt(op.get("observed"), SHORT_LEN),
                "detail": _text(op.get("detail") or ""),
                "origin": _clip(_text(op.get("origin") or "auto"), KIND_LEN),
                "clause": _opt(op.get("clause") or clause_of(op.get("rule")), RULE_LEN),
                "destination": _opt(op.get("destination"), SHORT_LEN),
                "destination_class": _opt(op.get("destination_class"), SHORT_LEN),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(op, exc) from None
        stmt = self._insert(AuditEvent).values(**values)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["event_id"]))

    def _apply_minutes(self, conn: Connection, op: Mapping[str, Any]) -> None:
        try:
            values = {
                "event_id": _clip(_text(op["event_id"]), EVENT_ID_LEN),
                "account": _clip(_text(op["account"]), ACCOUNT_LEN),
                "destination_class": _opt(op.get("destination_class"), SHORT_LEN),
                "answered": float(op["answered"]),
                "ended": float(op["ended"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(op, exc) from None
        stmt = self._insert(CallMinutes).values(**values)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["event_id"]))

    def _apply_lock(self, conn: Connection, op: Mapping[str, Any]) -> LockInfo | None:
        """Insert a lock, superseding the account's active one; None if it exists already."""
        try:
            until = op.get("until")
            info = LockInfo(
                lock_id=_clip(_text(op["lock_id"]), EVENT_ID_LEN),
                account=_clip(_text(op["account"]), ACCOUNT_LEN),
                since=float(op["since"]),
                until=None if until is None else float(until),
                reason=_text(op.get("reason") or ""),
                origin=_clip(_text(op.get("origin") or "auto"), KIND_LEN),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(op, exc) from None
        exists = conn.execute(select(Lock.id).where(Lock.lock_id == info.lock_id)).first()
        if exists is not None:
            return None  # replay: the supersede already happened with the first insert
        # Only locks that began before this one: a replayed old op never touches newer locks.
        conn.execute(
            update(Lock)
            .where(
                Lock.account == info.account,
                Lock.lock_id != info.lock_id,  # the same lock written by another instance
                Lock.released_at.is_(None),
                Lock.since <= info.since,
                or_(Lock.until.is_(None), Lock.until > info.since),
            )
            .values(released_at=info.since, released_by="superseded")
        )
        # A lock written late (the daemon's, after an outage) that a newer lock or an
        # operator's unlock already ended is stored ended: at most one lock is active.
        ended: tuple[float, str] | None = None
        newer = conn.execute(
            select(func.min(Lock.since)).where(
                Lock.account == info.account, Lock.released_at.is_(None),
                Lock.since > info.since)).scalar()
        if newer is not None:
            ended = (float(newer), "superseded")
        unlocked = conn.execute(
            select(func.min(Unlock.at)).where(Unlock.account == info.account,
                                              Unlock.at >= info.since)).scalar()
        if unlocked is not None and (ended is None or float(unlocked) < ended[0]):
            ended = (float(unlocked), "manual")
        stmt = self._insert(Lock).values(
            lock_id=info.lock_id, account=info.account, since=info.since, until=info.until,
            reason=info.reason, origin=info.origin,
            released_at=ended[0] if ended else None, released_by=ended[1] if ended else None,
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["lock_id"]))
        return info

    def _release(self, conn: Connection, account: str, at: float, by: str) -> list[LockInfo]:
        """Release the lock(s) of `account` active at `at` that began no later than `at`."""
        stmt = (
            select(Lock)
            .where(
                Lock.account == _clip(account, ACCOUNT_LEN),
                Lock.released_at.is_(None),
                Lock.since <= at,
                or_(Lock.until.is_(None), Lock.until >= at),
            )
            .order_by(Lock.since.desc(), Lock.id.desc())
            .with_for_update()
        )
        rows = list(conn.execute(stmt))
        if rows:
            conn.execute(
                update(Lock)
                .where(Lock.id.in_([row.id for row in rows]))
                .values(released_at=at, released_by=_clip(by, SHORT_LEN))
            )
        return [_lock_info(row) for row in rows]

    def _apply_status(self, conn: Connection, op: Mapping[str, Any]) -> None:
        try:
            updated_at = float(op["time"])
            body = json.dumps(op["body"], default=str, sort_keys=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(op, exc) from None
        stmt = self._insert(DaemonStatus).values(
            id=STATUS_ROW_ID, updated_at=updated_at, body=body
        )
        # A replayed older snapshot never overwrites a newer one.
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={"updated_at": stmt.excluded.updated_at, "body": stmt.excluded.body},
            where=DaemonStatus.updated_at <= stmt.excluded.updated_at,
        )
        conn.execute(stmt)

    def _open_listen(self) -> Any:
        import psycopg2

        cargs, cparams = pg_connect_args(self._engine)
        conn = psycopg2.connect(*cargs, **cparams)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_listen(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken; nothing more to do
                log.debug("closing the listen connection failed", exc_info=True)


def _manual_audit(kind: str, account: str, now: float, detail: str) -> dict[str, Any]:
    return AuditRecord(event_id=str(uuid_mod.uuid4()), time=now, account=account, kind=kind,
                       rule="manual", detail=detail, origin="manual").to_op()


def _lock_info(row: Any) -> LockInfo:
    return LockInfo(
        lock_id=row.lock_id, account=row.account, since=float(row.since),
        until=None if row.until is None else float(row.until), reason=row.reason,
        origin=row.origin,
    )


def _audit_dict(row: Any) -> dict[str, Any]:
    return AuditRecord(
        event_id=row.event_id, time=float(row.time), account=row.account, kind=row.kind,
        rule=row.rule, uuid=row.uuid, node=row.node, dry_run=bool(row.dry_run),
        limit=row.limit_value, observed=row.observed, detail=row.detail, origin=row.origin,
        clause=row.clause, destination=row.destination,
        destination_class=row.destination_class,
    ).as_dict()


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        raise ValueError("missing value")
    return str(value)


def _clip(value: str, length: int) -> str:
    return value[:length]


def _opt(value: Any, length: int) -> str | None:
    return None if value is None else _clip(_text(value), length)


def _malformed(op: Any, exc: Exception) -> StoreDataError:
    kind = op.get("op") if isinstance(op, Mapping) else type(op).__name__
    what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return StoreDataError(f"malformed {kind!r} op: {what}")


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _reason(exc: DBAPIError) -> str:
    """The driver's own message, without SQLAlchemy's statement/parameters dump."""
    orig = exc.orig if exc.orig is not None else exc
    return _one_line(orig)
