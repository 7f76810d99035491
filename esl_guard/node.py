"""One FreeSWITCH node: keep a GuardESL connected forever, resynced, and watched.

The node never decides anything; it hands every event to the service (``on_event``) and runs
the commands it is given.  Reconnects use tenacity (exponential backoff with jitter, forever,
one log line per failed attempt).  The backoff is reset only by a connection that stayed up
:data:`STABLE_AFTER` seconds: one that fails right after authenticating (a switch refusing us
on every connect) backs off like a failed connect, instead of reconnecting in a tight loop.
Reconciliations fetch the channel list over a connection of their own
(:mod:`esl_guard.snapshot`), never over the event connection.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

import gevent
from gevent.event import AsyncResult, Event
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random_exponential,
)

from esl_guard import snapshot
from esl_guard.config import NodeConfig
from esl_guard.esl import ESLError, GuardESL, Reply
from esl_guard.events import SUBSCRIPTION
from esl_guard.model import ChannelRow
from esl_guard.safety import is_uuid

log = logging.getLogger(__name__)

#: a connection that lasted less than this did not succeed: the reconnect backoff goes on
STABLE_AFTER = 30.0
#: reconnect waits: 0.25 s doubling to 15 s, plus as much again at random (at most 30 s)
DEFAULT_WAIT = (wait_exponential(multiplier=0.25, max=15)
                + wait_random_exponential(multiplier=0.25, max=15))


class ShortConnection(ESLError):
    """The connection ended before it was stable: reconnect after a backoff."""


class NodeOwner(Protocol):
    def node_event(self, node: str, name: str, body: bytes) -> None: ...
    def node_connected(self, link: NodeLink) -> None: ...
    def node_disconnected(self, link: NodeLink, reason: str) -> None: ...
    def event_filters(self) -> list[str]: ...


class NodeLink:
    def __init__(self, cfg: NodeConfig, owner: NodeOwner,
                 wait: Callable[..., float] | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.owner = owner
        self.conn: GuardESL | None = None
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        #: the switch's Core-UUID, asked for on each connect: a new one means FreeSWITCH
        #: restarted and every call of its previous run is gone (None: the peer did not say)
        self.core_uuid: str | None = None
        self._wait = wait or DEFAULT_WAIT
        self._stopping = False
        self._closed = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._snapshot: GuardESL | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> gevent.Greenlet:
        self._greenlet = gevent.spawn(self._run)
        return self._greenlet

    def stop(self) -> None:
        self._stopping = True
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.stop()
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    def _run(self) -> None:
        while not self._stopping:
            retrying = Retrying(wait=self._wait, retry=retry_if_exception_type(ESLError),
                                sleep=gevent.sleep, before_sleep=self._log_attempt, reraise=True)
            try:
                retrying(self._session)
            except Exception:  # noqa: BLE001 - a bug must never end enforcement on this node
                log.exception("node %s: unexpected error; reconnecting", self.name)
                if self.conn is not None:
                    self.conn.close("internal error")
                gevent.sleep(1.0)
                if not self._stopping:
                    self.reconnects += 1

    def _session(self) -> None:
        """Connect and serve until the connection ends; raises ESLError (so the caller backs
        off) unless it was up for :data:`STABLE_AFTER` seconds."""
        self._connect()
        if self._stopping:
            return
        loop = gevent.get_hub().loop
        loop.update_now()
        since = loop.now()
        self._serve()
        if self._stopping:
            return
        self.reconnects += 1
        loop.update_now()
        lasted = loop.now() - since
        if lasted < STABLE_AFTER:
            raise ShortConnection(f"connection lost after {lasted:.1f}s "
                                  f"({self.last_error or 'closed'})")

    def _log_attempt(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0
        self.last_error = str(exc)
        log.warning("node %s (%s:%s): %s; retry %d in %.1fs", self.name, self.cfg.host,
                    self.cfg.port, exc, state.attempt_number, delay)

    def _connect(self) -> None:
        if self._stopping:
            return
        self._closed.clear()
        conn = GuardESL(self.cfg.host, self.cfg.port, self.cfg.password,
                        timeout=self.cfg.connect_timeout, command_timeout=self.cfg.command_timeout,
                        on_event=functools.partial(self.owner.node_event, self.name),
                        on_close=self._on_close)
        self.conn = conn
        conn.connect()
        # Asked before subscribing, so no event of the new run is handled before the owner
        # knows whether the switch restarted.
        core = conn.send("api global_getvar core_uuid").body.strip()
        self.core_uuid = core if is_uuid(core) else None
        for line in self.owner.event_filters():  # before the subscription: no event unfiltered
            reply = conn.send(f"filter {line}")
            if not reply.ok:
                # A peer without `filter`: every CHANNEL_EXECUTE(_COMPLETE) comes, which costs
                # throughput but decides nothing differently (the account is learned from any
                # event that carries it); enforcement must not stop for it.
                log.warning("node %s: event filter refused (%s); following every "
                            "CHANNEL_EXECUTE event instead", self.name, reply.text.strip())
                break
        reply = conn.send(f"event plain {SUBSCRIPTION}")
        if not reply.ok:
            conn.close("subscription refused")
            raise ESLError(f"event subscription refused: {reply.text}")
        conn.last_rx = gevent.get_hub().loop.now()
        self.connected = True
        self.connected_since = time.time()
        self.last_error = None
        log.info("node %s: connected to %s:%s", self.name, self.cfg.host, self.cfg.port)
        self.owner.node_connected(self)

    def set_filters(self, old: list[str], new: list[str]) -> None:
        """Replace the connection's event filters ``old`` by ``new`` (a reload changed them);
        a connection made later sends ``new`` itself."""
        conn = self.conn
        if conn is None or not self.connected or old == new:
            return
        try:
            for line in new:
                if line not in old:
                    conn.send_nowait(f"filter {line}")
            for line in old:
                if line not in new:
                    conn.send_nowait(f"filter delete {line}")
        except ESLError as exc:
            log.warning("node %s: cannot change the event filters (%s): reconnecting", self.name,
                        exc)
            conn.close("event filters")

    def _serve(self) -> None:
        """Wait for the connection to end, watching for silence (half-open connections)."""
        conn = self.conn
        if conn is None:
            return
        interval = self.cfg.heartbeat_interval
        limit = 3 * interval
        loop = gevent.get_hub().loop
        last_probe = 0.0
        while not self._closed.wait(timeout=min(1.0, interval / 2)):
            loop.update_now()
            now = loop.now()
            idle = now - conn.last_rx
            if idle > limit:
                log.warning("node %s: no traffic for %.1fs (3 x heartbeat_interval); the "
                            "connection is half-open, reconnecting", self.name, idle)
                conn.close("heartbeat timeout")
            elif idle > 1.5 * interval and now - last_probe > interval:
                # No HEARTBEAT (or it is turned off): a cheap command proves the link is alive.
                last_probe = now
                try:
                    conn.send_nowait("api status")
                except ESLError:
                    pass
        self._closed.wait()

    # -- callbacks from the connection --------------------------------------------------------
    def _on_close(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        self.connected_since = None
        self._closed.set()
        snap, self._snapshot = self._snapshot, None
        if snap is not None:  # its answer would belong to a connection that is gone
            snap.close(f"event connection closed: {reason}")
        if was:
            self.last_error = None if self._stopping else reason
            log.log(logging.INFO if self._stopping else logging.WARNING,
                    "node %s: disconnected: %s", self.name, reason)
            self.owner.node_disconnected(self, reason)

    # -- commands -----------------------------------------------------------------------------
    def fetch_channels(self, account_variable: str, wall: Callable[[], float],
                       needs_answer: Callable[[ChannelRow], bool] | None = None
                       ) -> list[ChannelRow]:
        """The node's channel list, over a connection of its own (see :mod:`esl_guard.snapshot`);
        raises ESLError or ResyncError.  Aborted if the event connection closes meanwhile."""
        conn = self.conn
        if conn is None or not self.connected:
            raise ESLError(f"node {self.name} is not connected")

        mine: list[GuardESL] = []

        def opened(snap: GuardESL) -> None:
            mine.append(snap)
            self._snapshot = snap

        try:
            rows = snapshot.fetch_channels(self.cfg, account_variable, wall, on_open=opened,
                                           needs_answer=needs_answer)
        finally:
            if mine and self._snapshot is mine[0]:
                self._snapshot = None
        # A barrier: the answer came over another connection, so events FreeSWITCH sent
        # before it may still be unread on the event connection.  Once a command sent there
        # now is answered, they have all been handed to the owner (frames are handled in
        # order), and it can tell the calls that began or ended meanwhile.
        if self.conn is not conn or not self.connected:
            raise ESLError(f"node {self.name}: the event connection closed during the "
                           "reconciliation")
        conn.send("api status")
        return rows

    def api(self, command: str, timeout: float | None = None) -> Reply:
        conn = self.conn
        if conn is None or not self.connected:
            raise ESLError(f"node {self.name} is not connected")
        return conn.send(f"api {command}", timeout=timeout)

    def api_nowait(self, command: str) -> AsyncResult:
        conn = self.conn
        if conn is None or not self.connected:
            raise ESLError(f"node {self.name} is not connected")
        return conn.send_nowait(f"api {command}")
