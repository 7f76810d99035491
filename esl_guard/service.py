"""Wires the pure core to the adapters: nodes -> tracker -> actions -> (ESL, audit, metrics).

Everything here runs in greenlets of one gevent hub.  The reader greenlet of each node calls
:meth:`Guard.node_event`, which does only in-memory work; commands are sent without waiting for
their replies in the reader, and every database call runs in the writer's worker thread.
"""
from __future__ import annotations

import gc
import logging
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gevent

from esl_guard.cluster import decision_id, lock_id_for
from esl_guard.config import Config, NodeConfig
from esl_guard.esl import ESLError
from esl_guard.events import (
    CALL_EVENTS,
    EventDecoder,
    LazyEvent,
    event_filters,
    header_end,
    unique_id,
)
from esl_guard.logsummary import RefusalSummary, Summary
from esl_guard.metrics import Metrics
from esl_guard.model import Action, ActionKind, AuditRecord, Lock, Rule, clause_of
from esl_guard.node import NodeLink
from esl_guard.policy import (
    GATE_REFRESH,
    ended_horizon,
    node_lost,
    reconcile_locks,
    restored_windows,
)
from esl_guard.pushes import PushesMixin
from esl_guard.resyncing import NodeSync, ResyncMixin
from esl_guard.roles import RolesMixin
from esl_guard.safety import describe_account, is_uuid
from esl_guard.tracker import Tracker

log = logging.getLogger("esl_guard.enforce")
syslog = logging.getLogger(__name__)

TICK = 0.2
#: A locked account's refused calls: the first logged in full, then one count per this period.
REFUSAL_LOG_PERIOD = 60.0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def restored_summary(locks: Sequence[Any], lock_history: Mapping[str, Sequence[float]],
                     windows: Mapping[str, Sequence[float]]) -> list[str]:
    """The state a start-up restored, one log line per kind, with counts: the active locks
    (by origin), the escalation history and the ``lock_after`` windows."""
    manual = sum(1 for lk in locks if lk.origin == "manual")
    earlier = sum(len(times) for times in lock_history.values())
    violations = sum(len(times) for times in windows.values())
    return [
        f"restored {_plural(len(locks), 'active lock')} ({len(locks) - manual} automatic, "
        f"{manual} manual)",
        f"restored escalation history: {_plural(earlier, 'earlier lock')} of "
        f"{_plural(sum(1 for t in lock_history.values() if t), 'account')} in the last 30 days",
        f"restored lock_after windows: {_plural(violations, 'recent violation')} of "
        f"{_plural(sum(1 for t in windows.values() if t), 'account')}",
    ]


class Guard(PushesMixin, ResyncMixin, RolesMixin):
    def __init__(self, config: Config, *, writer: Any = None, store: Any = None,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, notifier: Any = None,
                 webhook: Any = None,
                 link_factory: Callable[[NodeConfig, Guard], NodeLink] = NodeLink) -> None:
        self.config = config
        self.link_factory = link_factory  # a node's link (tests: an in-memory switch)
        self.writer = writer
        self.store = store
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.wall = wall
        self.notifier = notifier
        self.webhook = webhook  # esl_guard.notify.Webhook: tells the operator ([notify])
        self.tracker = Tracker(config.limits_for, wall, config.destinations)
        self.tracker.reachable = self._reachable
        self.tracker.new_lock_id = _lock_id
        #: Active (acts) or hot standby (follows every event and resync, acts on nothing; its
        #: hangups wait in the tracker's deferred hangups for a takeover): issue 14.
        self.active = True
        self._set_ended_memory(config)
        self.links: dict[str, NodeLink] = {}
        self.sync: dict[str, NodeSync] = {}
        self.decoders: dict[str, EventDecoder] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self.started = wall()
        self.fail_closed = False
        #: The lock state was loaded from the database (see :meth:`lock_state_known`).
        self.locks_known = False
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._gates_refreshed = clock()
        self._warned: set[str] = set()
        self.refusals = RefusalSummary(REFUSAL_LOG_PERIOD)
        # Gauges computed when scraped, so they are never stale.
        tr = self.tracker
        self.metrics.active_calls.set_function(tr.live_calls)
        self.metrics.active_accounts.set_function(tr.active_accounts)
        self.metrics.locks_active.set_function(lambda: len(tr.locks))
        self.metrics.untracked_ended = lambda: tr.untracked_ended
        # Bounded label values: the subscribed event names, everything else is "other".
        self._counts = self.metrics.event_counts
        for name in (*CALL_EVENTS, "HEARTBEAT", "BACKGROUND_JOB", "other"):
            self._counts[name] = 0

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        # Everything alive now (modules, SQLAlchemy, gevent, the conf) lives as long as the
        # process: keep it out of the garbage collector's full passes, whose pauses would
        # otherwise delay a hangup by tens of milliseconds.
        gc.collect()
        gc.freeze()
        for cfg in self.config.nodes:
            self._add_node(cfg)
        self._greenlets.append(gevent.spawn(self._tick_loop))

    def _set_ended_memory(self, config: Config) -> None:
        slowest = max((n.resync_timeout for n in config.nodes), default=0.0)
        self.tracker.ended_memory = ended_horizon(slowest)

    def _add_node(self, cfg: NodeConfig) -> None:
        link = self.link_factory(cfg, self)
        self.links[cfg.name] = link
        self.sync[cfg.name] = NodeSync()
        self.decoders[cfg.name] = EventDecoder(cfg.name, self.config.account_variable)
        self.metrics.connected.labels(cfg.name).set(0)
        link.start()

    def stop(self) -> None:
        self._stopping = True
        self._log_refusals(self.refusals.flush(self.clock()))
        self._delete_all_gates()
        for link in self.links.values():
            link.stop()
        gevent.killall(self._greenlets, timeout=2)

    def _tick_loop(self) -> None:
        while not self._stopping:
            gevent.sleep(TICK)
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - never let the ticker die silently
                syslog.exception("tick failed")

    def tick(self) -> None:
        now = self.clock()
        self.dispatch(self.tracker.tick(now))
        self._log_refusals(self.refusals.due(now))
        self._store_minutes(now)
        if now >= self._gates_refreshed + GATE_REFRESH:
            self._gates_refreshed = now
            self._refresh_gates()
        for name, st in self.sync.items():
            link = self.links.get(name)
            if link is not None and node_lost(st.down_since, now, link.cfg.node_lost_after):
                st.down_since = None
                n = self.tracker.forget_node(name, now)
                self._push_gates()
                syslog.warning("node %s: unreachable for %gs (node_lost_after): its %d calls no "
                               "longer count against account limits until it is back",
                               name, link.cfg.node_lost_after, n)
            if link is None or not link.connected or st.syncing or st.inflight:
                continue
            if now >= st.next_resync:
                st.next_resync = now + link.cfg.resync_interval
                self._spawn(self._reconcile, link)

    # ------------------------------------------------------------------ events
    def node_event(self, node: str, name: str, body: bytes) -> None:
        counts = self._counts
        if name in CALL_EVENTS:
            counts[name] += 1
        else:
            counts[name if name in counts else "other"] += 1
            return
        st = self.sync[node]
        if st.syncing:
            st.buffer.append((name, body))
            return
        self._apply_event(node, name, body, st)

    def _apply_event(self, node: str, name: str, body: bytes, st: NodeSync) -> None:
        t0 = time.perf_counter()
        end = header_end(body)
        uuid = unique_id(body, end)
        if uuid is None:
            self.metrics.bad_input.labels("no_unique_id").inc()
            return
        tracker = self.tracker
        now = self.clock()
        if tracker.known_event(node, name, uuid, now):  # most events: nothing else to decode
            if tracker.gate_changes:  # a call ended: the dialplan may admit the next one now
                self._push_gates()
            return
        if not is_uuid(uuid):  # a new call: its uuid will go into uuid_kill
            self.metrics.bad_input.labels("bad_uuid").inc()
            self._warn_once("bad_uuid", "ignoring channel events whose Unique-ID is not a UUID "
                            f"(first: {describe_account(uuid)} on node {node})")
            return
        ev = LazyEvent(name, node, uuid, body, end, self.decoders[node].account_key)
        actions = tracker.on_unknown_event(ev, now)
        if actions:
            self.dispatch(actions, t0)
        elif tracker.gate_changes:
            self._push_gates()

    # ------------------------------------------------------------------ node status
    def _status_changed(self) -> None:
        if self.notifier is not None:
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        up = [n for n, link in self.links.items() if link.connected]
        down = [n for n, link in self.links.items() if not link.connected]
        text = f"{'active' if self.active else 'standby'}; {len(up)}/{len(self.links)} " \
               "FreeSWITCH nodes connected"
        if down:
            text += f" (down: {', '.join(down)})"
        return text + f"; {self.tracker.live_calls()} calls"

    # ------------------------------------------------------------------ actions
    def _reachable(self, node: str) -> bool:
        """Whether a command for ``node`` can go out now (an unknown node: nothing to wait for)."""
        link = self.links.get(node)
        return link is None or link.connected

    def _defer_unreachable(self, actions: list[Action]) -> list[Action]:
        """Hangups (and their violations) on a node whose link is down wait for its next
        resync, which carries them out if the call is still up: nothing is recorded before."""
        keep: list[Action] = []
        for action in actions:
            if (action.kind in (ActionKind.HANGUP, ActionKind.VIOLATION) and not action.dry_run
                    and action.uuid is not None and action.node is not None):
                if not self._reachable(action.node):
                    if action.kind is ActionKind.HANGUP:
                        syslog.warning("node %s is unreachable: the hangup of %s (%s) waits for "
                                       "the reconnect and is carried out if the call is still "
                                       "up", action.node, action.uuid,
                                       action.rule.value if action.rule else "-")
                    self.tracker.defer(action)
                    continue
            keep.append(action)
        return keep

    def dispatch(self, actions: list[Action], t0: float | None = None) -> None:
        if not self.active:
            self._follow(actions)
            return
        actions = self._defer_unreachable(actions)
        killed = False
        for action in actions:  # hang up first: logging and the audit row can wait
            if action.kind is ActionKind.HANGUP and not action.dry_run:
                self._kill(action)
                killed = True
        if killed and t0 is not None:
            self.metrics.latency.observe(time.perf_counter() - t0)
        if self.tracker.gate_changes:
            self._push_gates()
        for action in actions:
            if action.extra.get("restored"):  # an earlier run's lock: into FreeSWITCH only
                for link in self.links.values():
                    self._push_lock(link, action.account, action.until)
                continue
            self._log_action(action)
            if not action.extra.get("recorded"):
                self._record(action)
            clause = action.clause or clause_of(action.rule) or "none"
            cls = self.config.destinations.label(action.destination_class)
            self.metrics.actions.labels(action.rule.value if action.rule else "none",
                                        action.kind.value, str(action.dry_run).lower(),
                                        clause, cls).inc()
            if action.kind is ActionKind.VIOLATION:
                self.metrics.violations.labels(action.rule.value if action.rule else "none",
                                               str(action.dry_run).lower(), clause, cls).inc()
            elif action.kind is ActionKind.LOCK and not action.dry_run:
                for link in self.links.values():
                    self._push_lock(link, action.account, action.until)
            elif action.kind is ActionKind.UNLOCK and not action.dry_run:
                for link in self.links.values():
                    self._hash_delete(link, action.account)
            if self.webhook is not None:
                self.webhook.submit(action, self._usage(action.account))
            self.recent.append({"time": self.wall(), "kind": action.kind.value,
                                "account": action.account,
                                "rule": action.rule.value if action.rule else None,
                                "clause": clause if clause != "none" else None,
                                "destination": action.destination,
                                "destination_class": action.destination_class,
                                "uuid": action.uuid, "node": action.node,
                                "dry_run": action.dry_run})

    def _store_minutes(self, now: float) -> None:
        """The answered intervals of calls that ended under a minute budget go to the database
        (wall-clock times), so the budgets' windows survive a restart."""
        out = self.tracker.minutes_out
        if not out:
            return
        if self.writer is None or not self.active:  # a standby records nothing (issue 14)
            out.clear()
            return
        wall = self.wall()
        while out:
            account, cls, answered, ended = out.popleft()
            self.writer.submit({"op": "minutes", "event_id": str(uuidlib.uuid4()),
                                "account": account, "destination_class": cls,
                                "answered": wall - (now - answered),
                                "ended": wall - (now - ended)})

    def restore_minutes(self, rows: Sequence[tuple[str, str | None, float, float]]) -> int:
        """Minutes of calls that ended in earlier runs (wall-clock times, from the database)
        back into the budgets' windows."""
        wall, mono = self.wall(), self.clock()
        return self.tracker.restore_minutes(
            [(account, cls, mono - (wall - a), mono - (wall - e)) for account, cls, a, e in rows],
            mono)

    def _usage(self, account: str) -> dict[str, Any]:
        """The account's usage at this moment, for a notification."""
        return {"active_calls": self.tracker.active(account),
                "locked": self.tracker.is_locked(account)}

    def _log_refusals(self, summaries: list[Summary]) -> None:
        for s in summaries:
            log.warning("refused: account=%s rule=locked count=%d seconds=%.0f detail=%r",
                        describe_account(s.account), s.count, s.seconds,
                        f"{s.count} more calls of the locked account refused, each in the "
                        "audit trail")

    def _log_action(self, a: Action) -> None:
        if (a.kind is ActionKind.HANGUP and a.rule is Rule.LOCKED
                and not self.refusals.refused(a.account, self.clock())):
            return  # counted: one line per account per period (tick)
        parts = [f"{a.kind.value}:", f"account={describe_account(a.account)}",
                 f"rule={a.rule.value if a.rule else '-'}",
                 f"clause={a.clause or clause_of(a.rule) or '-'}"]
        if a.limit is not None:
            parts.append(f"limit={a.limit}")
        if a.observed is not None:
            parts.append(f"observed={a.observed}")
        if a.uuid is not None:  # a decision about a call: its number and class
            number = describe_account(a.destination) if a.destination else "-"
            parts += [f"destination={number}", f"class={a.destination_class or '-'}"]
        parts += [f"uuid={a.uuid or '-'}", f"node={a.node or '-'}"]
        if a.cause:
            parts.append(f"cause={a.cause}")
        if a.kind is ActionKind.LOCK:
            parts.append("until=" + ("forever" if a.until is None else
                                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.until))))
        parts.append(f"dry_run={str(a.dry_run).lower()}")
        if a.detail:
            parts.append(f"detail={a.detail!r}")
        quiet = a.kind is ActionKind.VIOLATION or a.kind is ActionKind.EXEMPT
        log.log(logging.INFO if quiet else logging.WARNING, " ".join(parts))

    def _record(self, a: Action) -> None:
        if self.writer is None:
            return
        now = self.wall()
        origin = str(a.extra.get("origin", "auto"))
        event_id = decision_id(a) or str(uuidlib.uuid4())
        self.writer.submit(AuditRecord.from_action(a, event_id, now, origin).to_op())
        if a.dry_run:
            return
        if a.kind is ActionKind.LOCK and "lock_id" in a.extra:
            since = a.extra.get("since")  # a lock taken while standby, written at takeover
            self.writer.submit({"op": "lock", "lock_id": a.extra["lock_id"], "account": a.account,
                                "since": since if isinstance(since, float) else now,
                                "until": a.until, "reason": a.detail,
                                "origin": origin})
        elif a.kind is ActionKind.UNLOCK:
            self.writer.submit({"op": "unlock", "account": a.account, "at": now, "by": origin,
                                "lock_id": a.extra.get("lock_id")})

    def _kill(self, a: Action) -> None:
        link = self.links.get(a.node or "")
        if a.uuid is None or not is_uuid(a.uuid) or link is None:
            return
        if not link.connected:
            syslog.error("cannot hang up %s on node %s: not connected (reconciliation will "
                         "retry the policy on reconnect)", a.uuid, a.node)
            return
        try:
            result = link.api_nowait(f"uuid_kill {a.uuid} {a.cause}")
        except ESLError as exc:
            self.metrics.command_errors.labels(link.name, "uuid_kill").inc()
            syslog.error("hangup of %s on node %s failed: %s", a.uuid, a.node, exc)
            return
        self._watch(result, link, "uuid_kill", a.uuid)

    # ------------------------------------------------------------------ the admission gate
    def event_filters(self) -> list[str]:
        """The ESL ``filter`` lines a node's link sends after subscribing."""
        return event_filters(self.config.account_variable)

    # ------------------------------------------------------------------ locks from the DB
    def sync_locks(self, active: list[Any], unlocked: Sequence[tuple[str, float]] = (), *,
                   restoring: bool = False) -> None:
        """Make the in-memory locks equal the database's active locks (manual changes), and end
        the locks decided here that an `esl-guard unlock` (``unlocked``: account, time) ended
        before they reached the database (:func:`esl_guard.policy.reconcile_locks`).
        ``restoring``: the locks of earlier runs at start-up, not decisions of this run (their
        LOCK actions are marked ``restored``: pushed into FreeSWITCH, never logged again)."""
        tr = self.tracker
        stored = {info.account: Lock(info.account, info.lock_id, info.until, info.reason,
                                     info.origin, since=info.since)
                  for info in sorted(active, key=lambda lk: lk.since)}  # the newest wins
        latest: dict[str, float] = {}
        for account, at in unlocked:
            latest[account] = max(at, latest.get(account, at))
        actions: list[Action] = []
        for change in reconcile_locks(tr.locks, stored, latest, self.wall()):
            lock = change.lock
            if change.kind == "confirm":
                tr.confirm_lock(lock.account, lock.lock_id)
                continue
            if change.kind == "apply":
                new = tr.apply_lock(lock)
            else:
                new = tr.release_lock(lock.account, change.origin, lock.lock_id)
            if change.recorded:  # `esl-guard lock/unlock` wrote its own audit row
                for a in new:
                    if a.kind in (ActionKind.LOCK, ActionKind.UNLOCK):
                        a.extra["recorded"] = True
                        if restoring and a.kind is ActionKind.LOCK:
                            a.extra["restored"] = True
            actions += new
        if actions:
            self.dispatch(actions)

    def pending_since(self) -> float | None:
        """When the oldest lock decided here and not yet in the database began (None: none):
        unlock requests since then may end it."""
        return self.tracker.pending_since()

    # ------------------------------------------------------------------ state from storage
    def restore_state(self, locks: list[Any], lock_history: dict[str, list[float]],
                      window_events: list[tuple[str, float, str]]) -> list[str]:
        """State saved by earlier runs: the database's active locks, the wall times of earlier
        locks per account (escalation) and the violations and lock decisions that make the
        lock_after windows (wall times), so enforcement continues where it was.  Returns what
        was restored, one line per kind for the log (:func:`restored_summary`)."""
        tr = self.tracker
        tr.restore_lock_history(lock_history)
        wall, mono = self.wall(), self.clock()
        windows = restored_windows(window_events)
        tr.restore_violations({account: [mono - (wall - t) for t in times] for account, times
                               in windows.items()})
        self.sync_locks(locks, restoring=True)
        return restored_summary(locks, lock_history, windows)

    def restore_journal(self, ops: list[dict[str, Any]]) -> None:
        """Locks and unlocks decided during an outage that only the journal holds."""
        tr = self.tracker
        for op in ops:
            if op.get("op") == "lock":
                tr.restore_pending_lock(Lock(op["account"], op["lock_id"], op.get("until"),
                                             op.get("reason", ""), op.get("origin", "auto"),
                                             since=op.get("since")))
            elif op.get("op") == "unlock":
                tr.forget_lock(op["account"], op.get("lock_id"))

    def set_fail_closed(self, closed: bool) -> None:
        """``fail_mode = closed`` and the lock state unknown: refuse every new call."""
        self.tracker.set_fail_closed(closed)

    def prune(self) -> int:
        """Forget idle accounts (memory bound); returns how many."""
        return self.tracker.prune(self.clock())

    # ------------------------------------------------------------------ reload
    def reload(self, config: Config) -> None:
        old_filters = self.event_filters()
        self.config = config
        for each in self.links.values():  # a new account_variable: new event filters
            each.set_filters(old_filters, self.event_filters())
        self._set_ended_memory(config)
        self.tracker.limits_for = config.limits_for
        self.tracker.destinations = config.destinations
        for name in self.decoders:  # the next event is read with the new account_variable
            self.decoders[name] = EventDecoder(name, config.account_variable)
        self.dispatch(self.tracker.retime(self.clock()))
        for cfg in config.nodes:
            link = self.links.get(cfg.name)
            if link is None:
                self._add_node(cfg)
            elif link.cfg != cfg:
                link.stop()
                self._add_node(cfg)
        for name in [n for n in self.links if n not in {c.name for c in config.nodes}]:
            self.links.pop(name).stop()
            self.sync.pop(name, None)
            self.tracker.forget_node(name, self.clock())
            self.tracker.deferred.pop(name, None)
            self.metrics.connected.remove(name)

    # ------------------------------------------------------------------ status
    def snapshot(self) -> dict[str, Any]:
        tr = self.tracker
        busiest = []
        now = self.clock()
        for account, n in tr.busiest(10):
            limits = self.config.limits_for(account)
            busiest.append({"account": account, "active": n,
                            "limit": limits.max_concurrent_calls,
                            **tr.class_usage(account, now)})
        return {
            "time": self.wall(), "started": self.started,
            "nodes": [{"name": n, "host": link.cfg.host, "port": link.cfg.port,
                       "connected": link.connected, "since": link.connected_since,
                       "reconnects": link.reconnects, "last_error": link.last_error}
                      for n, link in self.links.items()],
            "active_calls": tr.live_calls(), "tracked_channels": tr.tracked_channels(),
            "busiest": busiest,
            "locks": [{"account": lk.account, "until": lk.until_wall, "reason": lk.reason,
                       "origin": lk.origin} for lk in tr.locks.values()],
            "recent": list(self.recent),
            "role": "active" if self.active else "standby",
        }

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        """A short task; a bug in it is logged, never printed by gevent or left unnoticed."""
        def run() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001
                syslog.exception("%s failed", getattr(fn, "__name__", fn))
        gevent.spawn(run)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            syslog.warning(message)


def _lock_id(account: str, trigger: str) -> str:
    """A lock's id: deterministic from the violation that took it (issue 14), random for one
    without a call."""
    return lock_id_for(account, trigger) if trigger else str(uuidlib.uuid4())
