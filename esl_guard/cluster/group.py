"""The daemon's side of a group (PostgreSQL): checks the leadership connection every few
seconds in a thread of its own, feeds :mod:`esl_guard.cluster.roles` and carries out role
changes (the service acts or follows, one log line, one audit row, the metric, systemd's
STATUS line and this instance's row in ``cluster_members``)."""
from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import gevent
from gevent.threadpool import ThreadPool

from esl_guard.cluster.elector import Elector, Member
from esl_guard.cluster.roles import Change, Role, Seen, check_every, may_take, observe, starting
from esl_guard.store.pool import call_in

log = logging.getLogger("esl_guard.cluster")


class Group:
    def __init__(self, elector: Elector, failover_after: float, *, guard: Any, writer: Any,
                 metrics: Any, notifier: Any, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.elector = elector
        self.failover_after = failover_after
        self.guard, self.writer, self.metrics, self.notifier = guard, writer, metrics, notifier
        self.clock, self.wall = clock, wall
        self.pool = ThreadPool(1)
        self.state = starting(clock())
        self.role_since_wall = wall()

    @property
    def member(self) -> Member:
        return self.elector.member

    @property
    def role(self) -> Role:
        return self.state.role

    def first_check(self) -> None:
        """At start, before the nodes connect: the initial role (no takeover, nothing done
        yet).  The database unreachable: active, as a lone instance always was."""
        seen = self._observe()
        self.state, change = observe(self.state, seen, self.clock())
        self._apply_role()
        if not seen.reachable:
            log.warning("role: active (the database is unreachable: cannot tell whether another "
                        "instance is active; stepping down as soon as one is seen)")
        else:
            log.info("role: %s (instance %s, pid %d on %s)", self.role.value,
                     self.member.instance, self.member.pid, self.member.host)
        self._heartbeat()

    def run(self) -> None:
        every = check_every(self.failover_after)
        while True:
            gevent.sleep(every)
            self.check()

    def check(self) -> None:
        seen = self._observe()
        self.state, change = observe(self.state, seen, self.clock())
        if change is not None:
            self._changed(change)
        if seen.reachable:
            self._heartbeat()

    def stop(self) -> None:
        try:
            call_in(self.pool, self.elector.release, timeout=5.0)
        except (gevent.Timeout, Exception):  # noqa: BLE001 - stopping: the session ends anyway
            pass
        self.pool.kill()

    # ------------------------------------------------------------------ internals
    def _observe(self) -> Seen:
        take = may_take(self.state, self.clock(), self.failover_after)
        try:
            return call_in(self.pool, self.elector.check, take,
                           timeout=check_every(self.failover_after) + 5.0)
        except gevent.Timeout:
            return Seen(reachable=False)

    def _heartbeat(self) -> None:
        try:
            call_in(self.pool, self.elector.heartbeat, self.role.value, self.role_since_wall,
                    self.wall(), timeout=5.0)
        except gevent.Timeout:
            pass

    def _apply_role(self) -> None:
        active = self.role is Role.ACTIVE
        self.metrics.active.set(1 if active else 0)
        self.guard.set_active(active)

    def _changed(self, change: Change) -> None:
        self.role_since_wall = self.wall()
        m = self.member
        log.warning("role: %s -> %s: %s (instance %s, pid %d on %s)", change.old.value,
                    change.new.value, change.reason, m.instance, m.pid, m.host)
        self._apply_role()
        self.writer.submit({
            "op": "audit", "event_id": str(uuidlib.uuid4()), "time": self.role_since_wall,
            "account": "", "kind": "role", "rule": None, "uuid": None, "node": None,
            "dry_run": False, "limit": None, "observed": None, "origin": "system",
            "detail": f"{m.host} pid {m.pid} ({m.instance}): {change.old.value} -> "
                      f"{change.new.value}: {change.reason}", "clause": None})
        self.notifier.status(self.guard.status_line())
