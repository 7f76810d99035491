"""What esl-guard keeps in FreeSWITCH (a part of :class:`esl_guard.service.Guard`): the locks in
mod_hash (``lock_realm``) and the admission gate (``admit_<lock_realm>``, issue 12), pushed on
every change, pushed again on every connect with every other entry of the realm deleted, and
the replies of those commands watched (a failure is logged and counted, never waited for).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import AsyncResult

from esl_guard.config import Config
from esl_guard.esl import ESLError, Reply
from esl_guard.metrics import Metrics
from esl_guard.node import NodeLink
from esl_guard.policy import (
    gate_realm,
    gate_value,
    hash_value,
    parse_hash_dump,
    stale_gate_keys,
    stale_hash_keys,
)
from esl_guard.safety import describe_account, is_safe_account
from esl_guard.tracker import Tracker

syslog = logging.getLogger("esl_guard.service")  # the same logger as the service


def _safe_gate_key(key: str) -> bool:
    """A gate key may go into a ``hash`` command: ``ACCOUNT`` or ``ACCOUNT:CLASS``, each part
    safe (:func:`esl_guard.safety.is_safe_account`; ``:`` is in no account code)."""
    return all(is_safe_account(part) for part in key.split(":", 1))


class PushesMixin:
    """The mod_hash side of :class:`~esl_guard.service.Guard` (its attributes below)."""

    config: Config
    links: dict[str, NodeLink]
    tracker: Tracker
    metrics: Metrics
    clock: Callable[[], float]
    wall: Callable[[], float]
    active: bool
    locks_known: bool

    if TYPE_CHECKING:
        def _spawn(self, fn: Callable[..., None], *args: Any) -> None: ...

    def _delete_all_gates(self, wait: float = 2.0) -> None:
        """A stopped daemon refuses nothing: the active instance deletes its gates from every
        connected node and waits (at most ``wait`` seconds) for the answers before the links
        close, so none is cut off mid-way; what is left expires by itself (GATE_TTL)."""
        if not self.active or not self.tracker.gates:
            return
        realm = gate_realm(self.config.lock_realm)
        pending: list[AsyncResult] = []
        for link in self.links.values():
            for key in [k for k in self.tracker.gates if _safe_gate_key(k)]:
                try:
                    pending.append(link.api_nowait(f"hash delete/{realm}/{key}"))
                except ESLError:
                    break  # not connected: its entries expire
        gevent.wait(pending, timeout=wait)

    def _watch(self, result: AsyncResult, link: NodeLink, command: str, subject: str) -> None:
        def done(res: AsyncResult) -> None:
            if not res.successful():
                self.metrics.command_errors.labels(link.name, command).inc()
                syslog.error("%s %s on node %s: %s", command, subject, link.name, res.exception)
                return
            reply: Reply = res.value
            text = reply.text.strip()
            if text.startswith("+OK"):
                return
            if command == "uuid_kill" and "No such channel" in text:
                syslog.info("uuid_kill %s on node %s: call already gone", subject, link.name)
                return
            self.metrics.command_errors.labels(link.name, command).inc()
            syslog.error("%s %s on node %s answered %r", command, subject, link.name, text[:200])

        result.rawlink(done)
        timeout = link.cfg.command_timeout

        def expire() -> None:
            if not result.ready():
                self.metrics.command_errors.labels(link.name, command).inc()
                syslog.error("%s %s on node %s: no reply within %gs", command, subject,
                             link.name, timeout)
        gevent.spawn_later(timeout, expire)

    def lock_state_known(self) -> None:
        """The lock state was loaded from the database (maybe late, after an outage at the
        start): from now on every entry of the lock realm that is not an active lock goes."""
        self.locks_known = True
        if not self.active:
            return
        for link in self.links.values():
            if link.connected:
                self._spawn(self._delete_stale_hash, link)

    def _delete_stale_hash(self, link: NodeLink) -> None:
        """After a connect (the active locks were just pushed): delete every entry of the lock
        realm that is not an active lock, e.g. of a lock that expired or was unlocked while
        esl-guard or its link was down (:func:`esl_guard.policy.stale_hash_keys`)."""
        realm = self.config.lock_realm
        entries = self._hash_entries(link, realm, "the lock realm", "entries of ended locks")
        if entries is None:
            return
        for key in stale_hash_keys(entries, self.tracker.locks, self.wall(), self.locks_known):
            syslog.info("node %s: deleting the stale lock entry %s/%s (%s)", link.name, realm,
                        describe_account(key), entries[key])
            self._hash_delete(link, key)

    def _push_lock(self, link: NodeLink, account: str, until: float | None) -> None:
        if not link.connected:
            return  # pushed again on (re)connect
        if not is_safe_account(account):
            self.metrics.bad_input.labels("unsafe_account").inc()
            syslog.warning("not pushing the lock of %s into FreeSWITCH: the account code has "
                           "characters that are unsafe in an ESL command; its calls are still "
                           "hung up by esl-guard", describe_account(account))
            return
        cmd = f"hash insert/{self.config.lock_realm}/{account}/{hash_value(until)}"
        self._send_watched(link, cmd, "hash insert", account)

    def _hash_delete(self, link: NodeLink, account: str) -> None:
        if not link.connected or not is_safe_account(account):
            return
        self._send_watched(link, f"hash delete/{self.config.lock_realm}/{account}",
                           "hash delete", account)

    def _send_watched(self, link: NodeLink, cmd: str, what: str, subject: str) -> None:
        try:
            result = link.api_nowait(cmd)
        except ESLError as exc:
            self.metrics.command_errors.labels(link.name, what).inc()
            syslog.error("%s %s on node %s failed: %s", what, subject, link.name, exc)
            return
        self._watch(result, link, what, subject)

    def _push_all_locks(self, link: NodeLink) -> None:
        for lock in list(self.tracker.locks.values()):
            if self.tracker.is_locked(lock.account):
                self._push_lock(link, lock.account, lock.until_wall)

    def _push_gates(self) -> None:
        """Push the gates that changed (policy.gate; the tracker keys them by
        :func:`~esl_guard.policy.gate_key`: ``ACCOUNT``, ``ACCOUNT:CLASS``) into every
        connected node: an insert for a gate, a delete for a gate gone.  Called right after the
        event that changed it (a call's end: before anything else), in order on each link."""
        gates = self.tracker.gates
        changes = self.tracker.take_gate_changes()
        if not self.active:  # a standby pushes nothing (issue 14); a takeover pushes them all
            return
        for key in changes:
            gate = gates.get(key)
            for link in self.links.values():
                if gate is None:
                    self._gate_delete(link, key)
                else:
                    self._gate_insert(link, key)

    def _gate_insert(self, link: NodeLink, key: str) -> None:
        gate = self.tracker.gates.get(key)
        if gate is None or not link.connected:
            return  # pushed again on (re)connect
        if not _safe_gate_key(key):
            self.metrics.bad_input.labels("unsafe_account").inc()
            return  # its calls are still refused by esl-guard itself
        value = gate_value(gate, self.clock(), self.wall())
        self._send_watched(link, f"hash insert/{gate_realm(self.config.lock_realm)}/{key}/"
                           f"{value}", "hash insert", key)

    def _gate_delete(self, link: NodeLink, key: str) -> None:
        if not link.connected or not _safe_gate_key(key):
            return
        self._send_watched(link, f"hash delete/{gate_realm(self.config.lock_realm)}/{key}",
                           "hash delete", key)

    def _push_all_gates(self, link: NodeLink) -> None:
        for account in list(self.tracker.gates):
            self._gate_insert(link, account)

    def _refresh_gates(self) -> None:
        """Busy gates expire in FreeSWITCH (GATE_TTL) unless pushed again: push them."""
        if not self.active:
            return
        for account, gate in list(self.tracker.gates.items()):
            if gate.reopens is None:
                for link in self.links.values():
                    self._gate_insert(link, account)

    def _delete_stale_gates(self, link: NodeLink) -> None:
        """After a connect (the gates were just pushed): delete every entry of the gate realm
        that is not a gate now (:func:`esl_guard.policy.stale_gate_keys`)."""
        realm = gate_realm(self.config.lock_realm)
        entries = self._hash_entries(link, realm, "the admission realm", "stale entries")
        for key in stale_gate_keys(entries or {}, self.tracker.gates):
            self._gate_delete(link, key)

    @staticmethod
    def _hash_entries(link: NodeLink, realm: str, what: str,
                      left: str) -> dict[str, str] | None:
        """The entries of a mod_hash realm on a node (``hash_dump``), None if it cannot say."""
        try:
            reply = link.api(f"hash_dump db {realm}")
        except ESLError as exc:
            syslog.warning("node %s: cannot list %s %s (hash_dump): %s; %s stay until their "
                           "expiry", link.name, what, realm, exc, left)
            return None
        return parse_hash_dump(reply.body, realm)
