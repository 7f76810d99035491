"""`esl-guard run`: the daemon's main loop, signals, start-up and shutdown.

Start-up order: conf (already validated by the CLI) -> database schema and state (locks,
escalation history, recent violations, anything left in the journal) -> READY=1 -> nodes.  The
signal handlers only record the signal; this loop does the work.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from gevent.threadpool import ThreadPool

from esl_guard import __version__
from esl_guard.cluster.elector import Elector, Member
from esl_guard.cluster.group import Group
from esl_guard.cluster.single import AlreadyRunning, SingleInstance
from esl_guard.config import Config, ConfigError, diff_config, load_config, sqlite_file
from esl_guard.control import ControlServer, socket_path
from esl_guard.live import account_detail
from esl_guard.logsetup import setup_logging
from esl_guard.metrics import Metrics
from esl_guard.notify import Webhook
from esl_guard.policy import ESCALATION_WINDOW
from esl_guard.sdnotify import Notifier
from esl_guard.service import Guard
from esl_guard.store import Journal, Store, StoreError
from esl_guard.store.pool import call_in
from esl_guard.store.writer import AuditWriter

log = logging.getLogger(__name__)

STATUS_EVERY = 5.0
READY_WAIT = 60.0  # below systemd's default TimeoutStartSec (90 s)
DB_CALL_TIMEOUT = 30.0


class Daemon:
    def __init__(self, config_path: str, config: Config, *,
                 notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.store = Store(config.database.url)
        self.journal = Journal(config.database.journal)
        self.writer = AuditWriter(self.store, self.journal, queue_max=config.database.queue_max,
                                  retention=config.database.audit_retention)
        self.metrics.db_write_failures = lambda: self.writer.write_failures
        self.db = ThreadPool(2)  # LISTEN in one thread, reads and status in the other; the writer has its own
        self.webhook = Webhook(config.notify, self.metrics) if config.notify else None
        self.guard = Guard(config, writer=self.writer, store=self.store, metrics=self.metrics,
                           notifier=self.notifier, webhook=self.webhook)
        self.control = ControlServer(socket_path(config.database.journal), self._control)
        self.locks_loaded = False
        self.member = Member(uuidlib.uuid4().hex[:12], socket.gethostname(), os.getpid(),
                             time.time())
        # A group (issue 14) on PostgreSQL; one process per database on SQLite.
        db_file = sqlite_file(config.database.url)
        self.single = SingleInstance(db_file) if db_file else None
        self.group: Group | None = None
        if self.store.is_postgresql:
            self.group = Group(Elector(config.database.url, self.member,
                                       config.cluster.failover_after),
                               config.cluster.failover_after, guard=self.guard,
                               writer=self.writer, metrics=self.metrics, notifier=self.notifier)
        self._wake = Event()
        self._signals: list[int] = []
        self._greenlets: list[gevent.Greenlet] = []
        self._http: Any = None

    # ------------------------------------------------------------------ helpers
    def _db_call(self, fn: Callable[..., Any], *args: Any, timeout: float = DB_CALL_TIMEOUT) -> Any:
        return call_in(self.db, fn, *args, timeout=timeout)

    def request_stop(self) -> None:
        self._on_signal(signal.SIGTERM)

    def request_reload(self) -> None:
        self._on_signal(signal.SIGHUP)

    def _on_signal(self, signum: int) -> None:
        self._signals.append(signum)
        self._wake.set()

    def _spawn(self, fn: Callable[[], None]) -> None:
        g = gevent.spawn(fn)
        g.link_exception(self._crashed)
        self._greenlets.append(g)

    def _crashed(self, g: gevent.Greenlet) -> None:
        log.critical("internal task %s crashed: %r; stopping", g, g.exception)
        self._signals.append(-1)
        self._wake.set()

    # ------------------------------------------------------------------ start-up
    def prepare_database(self) -> None:
        db = self.config.database
        if db.url.startswith("sqlite:///") and not db.url.startswith("sqlite:///:memory:"):
            Path(db.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        Path(db.journal).parent.mkdir(parents=True, exist_ok=True)
        if db.auto_migrate:
            self._db_call(self.store.upgrade)
        elif self._db_call(self.store.revision) is None:
            raise StoreError("the database has no esl-guard schema and auto_migrate = false: "
                             f"run `esl-guard db upgrade -c {self.config_path}`")

    def load_state(self) -> None:
        """Active locks, escalation history (the real times of earlier runs' locks) and the
        lock_after windows as earlier runs left them, so enforcement continues.  Only what
        earlier runs stored counts: this run's own locks and violations (when the database
        answers late) are already in memory."""
        wall, started = time.time(), self.guard.started
        locks = self._db_call(self.store.active_locks, wall)
        history = self._db_call(self.store.lock_times_since, wall - ESCALATION_WINDOW, started)
        horizon = max((r.window for r in self._lock_windows()), default=0.0)
        events = (self._db_call(self.store.lock_window_events, wall - horizon, started)
                  if horizon else [])
        restored = self.guard.restore_state(locks, history, events)
        budget = self._minutes_window()
        minutes = (self._db_call(self.store.minutes_since, wall - budget, started)
                   if budget else [])
        ended = self.guard.restore_minutes(minutes)
        self.locks_loaded = True
        self.guard.set_fail_closed(False)
        self.guard.lock_state_known()
        for line in restored:  # one line per kind: old locks are not new decisions (issue 16)
            log.info("%s", line)
        if budget:
            log.info("restored minute budgets: %d ended calls", ended)

    def _minutes_window(self) -> float:
        """The longest ``max_minutes`` window of the policy, the accounts and the classes."""
        cfg = self.config
        dests = cfg.destinations
        limits = [cfg.policy, *cfg.accounts.values()]
        limits += [dests.limits(a, c) for a in ("", *cfg.accounts) for c in dests.classes
                   if c not in dests.exempt]
        return max((lim.max_minutes.window for lim in limits if lim.max_minutes), default=0.0)

    def _lock_windows(self) -> list[Any]:
        cfg = self.config
        rates = [cfg.policy.lock_after] + [lim.lock_after for lim in cfg.accounts.values()]
        return [r for r in rates if r is not None]

    def replay_journal_locks(self) -> None:
        """Locks decided during an outage that only the journal holds (not yet in the DB)."""
        try:
            ops = self.journal.read()
        except OSError as exc:
            log.error("cannot read the journal %s: %s", self.journal.path, exc)
            return
        self.guard.restore_journal(ops)
        if ops:
            log.info("journal %s holds %d audit operations from an earlier run; they are "
                     "written to the database when it answers", self.journal.path, len(ops))

    # ------------------------------------------------------------------ background loops
    def _lock_poller(self) -> None:
        interval = self.config.database.poll_interval
        failing = False
        while True:
            try:
                if not self.locks_loaded:  # unreachable at the start: schema first, then state
                    self.prepare_database()
                    self.load_state()
                else:
                    self._db_call(self.store.wait_for_change, interval, timeout=interval + 30)
                    self.sync_locks()
                if failing:
                    log.info("database reachable again: lock state is in sync")
                failing = False
            except (StoreError, gevent.Timeout, OSError) as exc:
                if not failing:
                    log.error("database unavailable: %s; enforcing from memory", exc)
                failing = True
                gevent.sleep(interval)

    def sync_locks(self) -> None:
        """The database's active locks, and the unlock requests that may end a lock decided
        here and not yet written, into the daemon."""
        locks = self._db_call(self.store.active_locks, time.time())
        since = self.guard.pending_since()
        unlocked = self._db_call(self.store.unlocks_since, since) if since is not None else []
        self.guard.sync_locks(locks, unlocked)

    def _status_loop(self) -> None:
        while True:
            gevent.sleep(STATUS_EVERY)
            self._report_status()
            self.notifier.status(self.guard.status_line())

    def snapshot(self, stopped: float | None = None) -> dict[str, Any]:
        """What `esl-guard status` shows: asked live over the control socket, and stored every
        STATUS_EVERY seconds; `stopped` (wall time) marks a clean stop."""
        snap = self.guard.snapshot()
        snap.update(version=__version__, stopped=stopped,
                    db_write_failures=self.writer.write_failures,
                    instance=self.member.instance, host=self.member.host, pid=self.member.pid)
        snap["audit_queue"] = self.writer.queue_depth
        snap["journal_bytes"] = self.writer.journal_bytes
        snap["db_ok"] = self.writer.db_ok
        return snap

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        """A question on the control socket (:mod:`esl_guard.control`)."""
        what = request.get("get")
        if what == "ping":
            return {"ok": True}
        if what == "status":
            return self.snapshot()
        if what == "account" and isinstance(request.get("account"), str):
            account = request["account"]
            guard = self.guard
            return account_detail(guard.tracker, guard.config.limits_for(account), account,
                                  guard.clock(), guard.wall(), guard.recent)
        return {"error": f"unknown request {what!r} (expected status or account)"}

    def _start_control(self) -> None:
        try:
            self.control.start()
        except OSError as exc:  # status falls back to the stored report
            log.error("no control socket at %s: %s; `esl-guard status` shows the stored "
                      "report only", self.control.path, exc)

    def _report_status(self, stopped: float | None = None) -> None:
        """Store the snapshot (every STATUS_EVERY seconds, and once more at a clean stop)."""
        snap = self.snapshot(stopped)
        self.metrics.audit_queue.set(self.writer.queue_depth)
        self.metrics.journal_bytes.set(self.writer.journal_bytes)
        self.metrics.db_up.set(1 if self.writer.db_ok else 0)
        self.guard.prune()
        if not self.guard.active:  # the group's status is the active instance's
            return
        self.writer.write_now([{"op": "status", "time": snap["time"], "body": snap}],
                              "the daemon status")

    def _ready_when_usable(self) -> None:
        """READY=1 once the database is usable (enforcement already runs meanwhile); after
        READY_WAIT without it, READY=1 anyway with a STATUS saying so, rather than letting
        systemd fail the start and restart-loop a daemon that is enforcing from memory."""
        deadline = time.monotonic() + READY_WAIT
        while not self.locks_loaded and time.monotonic() < deadline:
            gevent.sleep(0.2)
        status = self.guard.status_line()
        if not self.locks_loaded:
            status += "; DATABASE UNAVAILABLE, enforcing from memory"
        self.notifier.ready(status)

    def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        assert interval is not None
        while True:
            self.notifier.watchdog()
            gevent.sleep(interval)

    def _start_metrics(self) -> None:
        m = self.config.metrics
        if m is None:
            return
        from gevent.pywsgi import WSGIServer
        from prometheus_client import make_wsgi_app

        self._http = WSGIServer((m.host, m.port), make_wsgi_app(self.metrics.registry), log=None,
                                error_log=None)
        self._http.start()
        log.info("metrics on http://%s:%d/metrics", m.host, m.port)

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        if self.single is not None:
            try:
                self.single.acquire()
            except AlreadyRunning as exc:
                log.error("refusing to start: %s", exc)
                return 1
            except OSError as exc:
                log.error("refusing to start: cannot lock %s: %s", self.single.path,
                          exc.strerror or exc)
                return 1
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            gevent.signal_handler(signum, self._on_signal, signum)
        if self.notifier.watchdog_interval:
            self._spawn(self._watchdog_loop)
        try:
            self.prepare_database()
            self.load_state()
        except (StoreError, gevent.Timeout, OSError) as exc:
            mode = self.config.database.fail_mode
            log.error("database unavailable at start: %s; fail_mode = %s: %s", exc, mode,
                      "refusing every new call until the lock state is known" if mode == "closed"
                      else "enforcing limits, locks known only from the journal")
            self.guard.set_fail_closed(mode == "closed")
        self.replay_journal_locks()
        if self.group is not None:  # the role before the first event: a standby acts on nothing
            self.group.first_check()
        self.writer.start()
        try:
            self._start_metrics()
        except OSError as exc:
            log.error("cannot serve metrics on %s:%s: %s", self.config.metrics.host if
                      self.config.metrics else "", self.config.metrics.port if
                      self.config.metrics else "", exc)
            return 1
        if self.webhook is not None:
            self.webhook.start()
        self._start_control()
        self.guard.start()
        self._spawn(self._lock_poller)
        if self.group is not None:
            self._spawn(self.group.run)
        self._spawn(self._status_loop)
        self._spawn(self._ready_when_usable)
        log.info("esl-guard %s running: %d node(s), policy from %s", __version__,
                 len(self.config.nodes), ", ".join(self.config.files))
        code = 0
        while True:
            self._wake.wait()
            self._wake.clear()
            signals, self._signals = self._signals, []
            if signal.SIGHUP in signals:
                self.reload()
            if any(s in (signal.SIGTERM, signal.SIGINT, -1) for s in signals):
                code = 1 if -1 in signals else 0
                break
        self.shutdown()
        return code

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("reload refused: %s", line)
            log.error("reload refused: still enforcing the previous policy")
            self.notifier.ready(self.guard.status_line())
            return
        changes = diff_config(self.config, new)
        if new.database != self.config.database or new.metrics != self.config.metrics \
                or new.logging != self.config.logging or new.notify != self.config.notify \
                or new.cluster != self.config.cluster:
            log.warning("reload: [database], [notify], [metrics], [cluster] and [logging] "
                        "changes need a restart")
        self.config = new
        self.guard.reload(new)
        for line in changes or ["no changes"]:
            log.info("reload: %s", line)
        self.notifier.ready(self.guard.status_line())

    def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: closing ESL sessions and flushing the audit trail")
        self.control.stop()
        self.guard.stop()
        gevent.killall(self._greenlets, timeout=2)
        self._report_status(stopped=time.time())
        if self.group is not None:  # a standby takes over within one check
            self.group.stop()
        if self._http is not None:
            self._http.stop(timeout=1)
        if self.webhook is not None:
            self.webhook.stop(timeout=2.0)
        if not self.writer.stop(timeout=10.0):
            log.error("audit rows could not be saved to the database or the journal")
        self.db.kill()
        self.store.close()
        if self.single is not None:
            self.single.release()
        log.info("stopped")


def run(config_path: str, config: Config) -> int:
    setup_logging(config.logging.format, config.logging.level)
    return Daemon(config_path, config).run()
