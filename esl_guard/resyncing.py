"""Following each node's calls across connects (a part of :class:`esl_guard.service.Guard`): the
node callbacks, the initial resync with the events buffered meanwhile, the periodic
reconciliation over a connection of its own, and the calls that ended while a link was down.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

from esl_guard.config import Config
from esl_guard.esl import ESLError
from esl_guard.events import EventDecoder
from esl_guard.metrics import Metrics
from esl_guard.model import Action, ChannelRow
from esl_guard.node import NodeLink
from esl_guard.policy import needs_answer_time, recheck_after, restarted
from esl_guard.resync import ADOPT_AFTER, ResyncError, not_too_new
from esl_guard.snapshot import retry_delay
from esl_guard.tracker import Tracker

syslog = logging.getLogger("esl_guard.service")  # the same logger as the service


@dataclass
class NodeSync:
    """Resync bookkeeping of one node."""

    syncing: bool = False           # initial resync in flight: events are buffered
    buffer: list[tuple[str, bytes]] = field(default_factory=list)
    inflight: bool = False          # a periodic reconciliation is in flight
    next_resync: float = 0.0
    down_since: float | None = None  # the link went down then (monotonic); None: up or lost
    ok: bool = False
    failures: int = 0               # reconciliations failed in a row (retried within seconds)
    asked: float = 0.0              # wall time the latest channel list was asked for
    core_uuid: str | None = None    # the switch's Core-UUID when last connected


class ResyncMixin:
    """The node side of :class:`~esl_guard.service.Guard` (its attributes below)."""

    config: Config
    links: dict[str, NodeLink]
    sync: dict[str, NodeSync]
    decoders: dict[str, EventDecoder]
    tracker: Tracker
    metrics: Metrics
    clock: Callable[[], float]
    wall: Callable[[], float]
    active: bool

    if TYPE_CHECKING:
        def _spawn(self, fn: Callable[..., None], *args: Any) -> None: ...
        def _apply_event(self, node: str, name: str, body: bytes, st: NodeSync) -> None: ...
        def _status_changed(self) -> None: ...
        def dispatch(self, actions: list[Action], t0: float | None = None) -> None: ...
        def _push_all_locks(self, link: NodeLink) -> None: ...
        def _delete_stale_hash(self, link: NodeLink) -> None: ...
        def _push_all_gates(self, link: NodeLink) -> None: ...
        def _delete_stale_gates(self, link: NodeLink) -> None: ...

    def node_connected(self, link: NodeLink) -> None:
        self.metrics.connected.labels(link.name).set(1)
        if link.reconnects:
            self.metrics.reconnects.labels(link.name).inc()
        if self.active:
            self._push_all_locks(link)
            self._spawn(self._delete_stale_hash, link)
            self._push_all_gates(link)
            self._spawn(self._delete_stale_gates, link)
        st = self.sync[link.name]
        if restarted(st.core_uuid, link.core_uuid):
            n = self.tracker.forget_node(link.name, self.clock())
            syslog.warning("node %s: FreeSWITCH restarted (new Core-UUID %s): its %d calls "
                           "ended with its previous run and no longer count", link.name,
                           link.core_uuid, n)
        st.core_uuid = link.core_uuid or st.core_uuid
        st.down_since = None
        st.ok = False
        st.syncing = True
        st.buffer = []
        self._spawn(self._initial_resync, link, st)
        self._status_changed()

    def node_disconnected(self, link: NodeLink, reason: str) -> None:
        self.metrics.connected.labels(link.name).set(0)
        st = self.sync[link.name]
        st.down_since = self.clock()
        if st.syncing:  # keep what we learned; nothing is dropped on a failed sync
            self._flush_buffer(link.name, st)
        st.inflight = False
        self._status_changed()

    def _try_fetch(self, link: NodeLink, st: NodeSync) -> list[ChannelRow] | Exception:
        """The node's channel list, over a connection of its own (hangups never wait for it),
        or why not; after a failure the next try is within seconds (backing off up to
        resync_interval)."""
        st.asked = self.wall()
        try:
            return link.fetch_channels(self.config.account_variable, self.wall,
                                       self._answer_unknown(link.name))
        except (ESLError, ResyncError) as exc:
            st.failures += 1
            st.next_resync = self.clock() + retry_delay(st.failures, link.cfg.resync_interval)
            return exc

    def _answer_unknown(self, node: str) -> Callable[[ChannelRow], bool]:
        """Which listed channels need their answer time (``uuid_dump``): answered, of an
        account with a duration limit, not yet timed here."""
        nodes = self.tracker.nodes
        limits_for = self.config.limits_for

        def needs(row: ChannelRow) -> bool:
            call = nodes.get(node, {}).get(row.uuid)
            timed = call is not None and call.answered is not None
            return (row.account is not None
                    and needs_answer_time(row.answered, row.b_leg, timed, limits_for(row.account)))
        return needs

    def _initial_resync(self, link: NodeLink, st: NodeSync) -> None:
        asked = self.clock()
        fetch = gevent.spawn(self._try_fetch, link, st)
        fetch.join(timeout=link.cfg.command_timeout)
        if not fetch.ready():
            # A slow answer: hangups must not wait for it.  The buffered events are applied
            # now, and the answer, when it comes, like a periodic reconciliation's.
            syslog.warning("node %s: the channel list is slow (over command_timeout); "
                           "following events meanwhile", link.name)
            st.inflight = True
            self._flush_buffer(link.name, st)
            self._reconcile(link, fetch, "initial", asked)
            return
        rows = fetch.get()
        if isinstance(rows, Exception):
            self.metrics.resyncs.labels(link.name, "failed").inc()
            syslog.error("node %s: resync failed, keeping the calls we know (%s); retrying in "
                         "%.0fs", link.name, rows, st.next_resync - self.clock())
            self._flush_buffer(link.name, st)
            return
        # A call whose CHANNEL_CREATE arrived after we subscribed is a new call, not one that
        # was already up: it is left out of the snapshot and goes through the policy when the
        # buffered events are replayed.
        decoder = self.decoders[link.name]
        created = {ev.uuid for name, body in st.buffer if name == "CHANNEL_CREATE"
                   for ev in (decoder.lazy(body, name),) if ev is not None}
        rows = [r for r in rows if r.uuid not in created]
        added, dropped, actions = self.tracker.resync(link.name, rows, self.clock(), asked)
        dropped += self._drop_gone(link)
        self._resync_done(link, st, added, dropped, "initial")
        self.dispatch(actions)
        self._flush_buffer(link.name, st)

    def _drop_gone(self, link: NodeLink) -> int:
        """After a (re)connect: the calls the first list omitted but kept (their events began
        just before it was asked for) came over an earlier connection, so they may have ended
        unseen while the link was down.  The switch's sessions tell (``uuid_exists``, not its
        lagging database): those it no longer has end now.  Unanswered: kept, the next
        reconciliation (within seconds) tells."""
        gone: list[str] = []
        for uuid in list(self.tracker.unlisted):
            try:
                reply = link.api(f"uuid_exists {uuid}")
            except ESLError as exc:
                syslog.warning("node %s: uuid_exists %s failed (%s): the call is kept until "
                               "the next reconciliation", link.name, uuid, exc)
                break
            if reply.body.strip() == "false":
                gone.append(uuid)
        return self.tracker.gone(link.name, gone, self.clock()) if gone else 0

    def _flush_buffer(self, node: str, st: NodeSync) -> None:
        st.syncing = False
        buffered, st.buffer = st.buffer, []
        for name, body in buffered:
            self._apply_event(node, name, body, st)

    def _reconcile(self, link: NodeLink, fetch: gevent.Greenlet | None = None,
                   kind: str = "periodic", asked: float | None = None) -> None:
        st = self.sync[link.name]
        if fetch is None:
            st.inflight = True
            asked = self.clock()
        try:
            rows = fetch.get() if fetch is not None else self._try_fetch(link, st)
        finally:
            st.inflight = False
        if isinstance(rows, Exception):
            self.metrics.resyncs.labels(link.name, "failed").inc()
            syslog.warning("node %s: reconciliation failed, nothing changed (%s); retrying in "
                           "%.0fs", link.name, rows, st.next_resync - self.clock())
            return
        # The answer lags behind events: the tracker keeps calls first seen shortly before it
        # was asked for, and never brings back calls seen to end (policy.calls).  A brand-new
        # call it does not know yet is left to its events; one older than this connection has
        # none coming (its CHANNEL_CREATE came before we subscribed) and is adopted at once.
        since = st.asked - (link.connected_since or 0.0)  # rows' ages are from after `asked`
        rows = not_too_new(rows, self.tracker.nodes.get(link.name, {}),
                           min(ADOPT_AFTER, max(0.0, since)))
        added, dropped, actions = self.tracker.resync(link.name, rows, self.clock(), asked)
        if kind == "initial":
            dropped += self._drop_gone(link)
        self._resync_done(link, st, added, dropped, kind)
        self.dispatch(actions)

    def _resync_done(self, link: NodeLink, st: NodeSync, added: int, dropped: int,
                     kind: str) -> None:
        st.ok = True
        st.failures = 0
        st.next_resync = self.clock() + recheck_after(self.tracker.unlisted_kept,
                                                      link.cfg.resync_interval)
        self.metrics.resyncs.labels(link.name, "ok").inc()
        self.metrics.resync_changes.labels(link.name, "added").inc(added)
        self.metrics.resync_changes.labels(link.name, "dropped").inc(dropped)
        level = logging.INFO if (added or dropped or kind == "initial") else logging.DEBUG
        syslog.log(level, "node %s: %s resync: %d calls added, %d phantom calls dropped",
                   link.name, kind, added, dropped)
