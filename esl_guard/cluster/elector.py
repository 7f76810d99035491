"""The leadership connection (PostgreSQL): a session advisory lock held by the active instance.

One psycopg2 connection of its own, in autocommit, opened and checked every few seconds by
:meth:`Elector.check`; the lock lives as long as the session: when the active process dies
(SIGKILL: the kernel closes its socket) PostgreSQL ends the session and frees the lock; when
its host vanishes, the server-side TCP keepalives set on this session end it within
``failover_after``.  The same connection keeps this instance's row in ``cluster_members``
(what `esl-guard status` lists).

Blocking (psycopg2 is a C driver that gevent cannot switch out of): the daemon runs every
call in a thread of its own pool (:func:`esl_guard.store.pool.call_in`), with a timeout.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from esl_guard.cluster.roles import Seen
from esl_guard.store.engine import make_engine, parse_url, pg_connect_args

log = logging.getLogger(__name__)

#: The advisory lock key of the leadership (one group per database): "esl-guard" in ASCII.
LEADER_KEY = 0x65736C2D6775617264 & 0x7FFFFFFFFFFFFFFF
#: Rows of instances not seen for this long are deleted from cluster_members.
FORGET_AFTER = 86400.0


@dataclass(frozen=True)
class Member:
    """This instance, as `esl-guard status` lists it."""

    instance: str
    host: str
    pid: int
    started: float


def session_options(failover_after: float) -> str:
    """Server-side keepalives of the leadership session, so that PostgreSQL ends the session
    of a vanished host (and frees the lock) within ``failover_after``."""
    step = max(1, int(failover_after // 4))
    return (f"-c tcp_keepalives_idle={step} -c tcp_keepalives_interval={step} "
            f"-c tcp_keepalives_count=2 -c tcp_user_timeout={step * 3000} "
            f"-c statement_timeout={step * 2000}")


class Elector:
    def __init__(self, url: str, member: Member, failover_after: float) -> None:
        engine = make_engine(parse_url(url))
        try:
            cargs, params = pg_connect_args(engine)
        finally:
            engine.dispose()
        params["application_name"] = "esl-guard-leader"
        params["connect_timeout"] = max(1, min(5, int(failover_after // 2)))
        params["options"] = session_options(failover_after)
        step = max(1, int(failover_after // 4))
        params.update(keepalives=1, keepalives_idle=step, keepalives_interval=step,
                      keepalives_count=2)
        self._cargs, self._params = cargs, params
        self.member = member
        self._conn: Any = None
        self.holding = False

    def check(self, take: bool) -> Seen:
        """Is the database reachable, do we hold the lock (trying to take it if ``take``)."""
        import psycopg2

        try:
            conn = self._connect()
            with conn.cursor() as cur:
                if take and not self.holding:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_KEY,))
                    self.holding = bool(cur.fetchone()[0])
                else:
                    cur.execute("SELECT 1")
                    cur.fetchone()
        except (psycopg2.Error, OSError) as exc:
            log.debug("leadership connection: %s", " ".join(str(exc).split()))
            self.close()
            return Seen(reachable=False)
        return Seen(reachable=True, holds=self.holding)

    def heartbeat(self, role: str, since: float, wall: float) -> None:
        """This instance's row in cluster_members (``role`` since ``since``; wall times)."""
        import psycopg2

        m = self.member
        if self._conn is None:
            return
        try:
            with self._conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO cluster_members (instance, host, pid, role, since, started, "
                    "last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (instance) DO "
                    "UPDATE SET role = EXCLUDED.role, since = EXCLUDED.since, "
                    "last_seen = EXCLUDED.last_seen",
                    (m.instance, m.host, m.pid, role, since, m.started, wall))
                cur.execute("DELETE FROM cluster_members WHERE last_seen < %s",
                            (wall - FORGET_AFTER,))
        except psycopg2.Error as exc:  # e.g. the schema is not upgraded yet: not a DB outage
            log.debug("cannot record this instance in cluster_members: %s",
                      " ".join(str(exc).split()))

    def release(self) -> None:
        """A clean stop: free the lock at once (a standby takes over within one check)."""
        import psycopg2

        if self._conn is not None and self.holding:
            try:
                with self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (LEADER_KEY,))
            except psycopg2.Error:
                pass
        self.close()

    def close(self) -> None:
        conn, self._conn, self.holding = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def _connect(self) -> Any:
        import psycopg2

        if self._conn is None or self._conn.closed:
            self.holding = False
            conn = psycopg2.connect(*self._cargs, **self._params)
            conn.autocommit = True
            self._conn = conn
        return self._conn
