"""`AuditWriter`: the daemon's gevent front end to `Store.apply`.

`submit()` never blocks: ops go to an in-memory deque; a writer greenlet sends them in
batches to the database through ONE native worker thread (the hub never blocks on the DB).
While the database is down, ops that exceed `queue_max` are spilled to a local `Journal`;
on recovery the journal (oldest ops) is replayed first, then the deque, so ops reach the
database in submission order.  Ops are idempotent (event_id / lock_id), so the replay of a
batch that was committed just before a crash or a spill is harmless.

Invariant: every submitted op that is not yet committed is in the journal after byte
`_joff`, or in the deque.  `_left` counts the ops that ever left the deque (committed or
spilled); it is the sequence number of the deque's head.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import gevent.lock
from gevent.event import Event
from gevent.pool import Group
from gevent.threadpool import ThreadPool
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_never
from tenacity.wait import wait_base, wait_random_exponential

from esl_guard.store.errors import StoreDataError, StoreError
from esl_guard.store.journal import Journal
from esl_guard.store.pool import call_in
from esl_guard.store.repository import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = dict[str, Any]

SPILL_ERROR_LOG_INTERVAL = 60.0  # seconds between "cannot write the journal" errors
WRITE_ERROR_LOG_INTERVAL = 60.0  # seconds between "database writes still fail" lines
PRUNE_FIRST = 60.0  # seconds after the start before the first audit_retention pass
PRUNE_EVERY = 3600.0  # then this often
PRUNE_BATCH = 5000  # audit rows deleted per transaction


class AuditWriter:
    def __init__(
        self,
        store: Store,
        journal: Journal,
        queue_max: int = 10000,
        batch_max: int = 500,
        retry_policy: wait_base | None = None,
        clock: Callable[[], float] = time.time,
        pool: ThreadPool | None = None,
        retention: float | None = None,
    ) -> None:
        """`retry_policy`: the tenacity wait strategy between failed DB writes (default:
        exponential with jitter up to 30 s).  `pool`: the single-thread pool that runs DB
        calls (created here when not given; share it to serialise all DB work).
        `retention` (seconds; ``[database] audit_retention``): audit rows older than this are
        deleted soon after the start and every PRUNE_EVERY seconds, in the writer's database
        thread, a batch at a time between the writes (None: kept forever).
        """
        if queue_max < 1 or batch_max < 1:
            raise ValueError("queue_max and batch_max must be >= 1")
        self._store = store
        self._journal = journal
        self.queue_max = queue_max
        self.batch_max = batch_max
        self._wait = retry_policy or wait_random_exponential(multiplier=0.5, max=30)
        self._clock = clock
        self._db_pool = pool if pool is not None else ThreadPool(1)
        self._own_db_pool = pool is None
        self._io_pool = ThreadPool(1)  # journal file I/O (fsync) off the hub, in order
        self.on_state: Callable[[bool], None] | None = None
        self.retention = retention
        self.pruned = 0  # audit rows deleted since start (audit_retention)

        self._queue: deque[Op] = deque()
        self._submitted = 0
        self._left = 0
        self._joff = 0
        self._journal_dirty = True  # a previous run may have left ops there
        self._jlock = gevent.lock.Semaphore()  # journal append vs. clear
        self._work = Event()
        self._kick = Event()  # cut a retry back-off short (flush)
        self._spill_wanted = Event()
        self._progress = Event()
        self._group: Group | None = None

        self._db_ok = True
        self._written = 0
        self._rejected = 0
        self._outage_started: float | None = None  # monotonic
        self._outage_since: float | None = None  # clock()
        self._replayed: int | None = None
        self._last_spill_error = float("-inf")
        self._write_failures = 0
        self._failures_logged = 0  # _write_failures when the last failure line was written
        self._last_write_error = float("-inf")  # monotonic
        self._status_failing = False

    # -- public -------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def journal_bytes(self) -> int:
        return self._journal.size()

    @property
    def db_ok(self) -> bool:
        return self._db_ok

    @property
    def written(self) -> int:
        """Ops written to the database (a replayed op counts again)."""
        return self._written

    @property
    def outage_since(self) -> float | None:
        """When (clock time) the current database outage began; None while writes work."""
        return self._outage_since

    @property
    def write_failures(self) -> int:
        """Database writes that failed since start (audit batches and status snapshots; each
        failed attempt counts).  Every one is logged, rate-limited (WRITE_ERROR_LOG_INTERVAL)."""
        return self._write_failures

    @property
    def rejected(self) -> int:
        """Ops dropped because the database rejects them for good (logged at ERROR)."""
        return self._rejected

    def start(self) -> None:
        if self._group is not None:
            return
        self._group = Group()
        targets = [self._run, self._spiller] + ([self._pruner] if self.retention else [])
        for target in targets:
            greenlet = self._group.spawn(target)
            greenlet.link_exception(self._crashed)

    def submit(self, op: Op) -> None:
        """Queue an op; never blocks, never raises."""
        try:
            self._queue.append(op)
            self._submitted += 1
            self._work.set()
            if not self._db_ok and len(self._queue) > self.queue_max:
                self._spill_wanted.set()
        except Exception:  # noqa: BLE001 - the caller is the event loop: never raise into it
            log.exception("cannot queue an audit op")

    def flush(self, timeout: float) -> bool:
        """Wait until every op submitted so far is in the database.

        At the deadline, spill what is still queued to the journal.  True when nothing
        remains only in memory.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        target = self._submitted
        self._kick.set()  # retry now rather than after the back-off
        while not (self._left >= target and not self._journal_dirty):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._spill(len(self._queue))
                return self._left >= target
            self._progress.wait(min(remaining, 1.0))
        return True

    def stop(self, timeout: float) -> bool:
        """flush(timeout), then stop the greenlets and threads.  Returns flush's result."""
        ok = self.flush(timeout)
        if not ok:
            log.error("%d audit ops are lost: the database is unreachable and the journal %s "
                      "cannot be written", len(self._queue), self._journal.path)
        if self._group is not None:
            self._group.kill(block=True, timeout=5)
            self._group = None
        self._io_pool.kill()
        if self._own_db_pool:
            self._db_pool.kill()
        return ok

    def write_now(self, ops: list[Op], what: str, timeout: float = 10.0) -> bool:
        """Write `ops` once, now, in the writer's database thread (no queue, no journal, no
        retry: for the status snapshot, which the next one replaces).  A failure is counted
        and logged (rate-limited); returns whether the write succeeded."""
        try:
            call_in(self._db_pool, self._store.apply, ops, timeout=timeout)
        except (StoreError, gevent.Timeout) as exc:
            first = not self._status_failing
            self._status_failing = True
            self._failed(f"cannot write {what} to the database", exc, first=first)
            return False
        if self._status_failing:
            self._status_failing = False
            log.info("%s is written to the database again", what)
        return True

    # -- audit_retention ----------------------------------------------------------------

    def _pruner(self) -> None:
        """Delete audit rows older than the retention: a while after the start, then every
        PRUNE_EVERY seconds.  Each batch runs in the writer's database thread (never on the
        hub), taking its turn with the writes."""
        assert self.retention is not None
        gevent.sleep(PRUNE_FIRST)
        failing = False
        while True:
            try:
                self.prune_now()
                if failing:
                    log.info("old audit rows are deleted again (audit_retention)")
                failing = False
            except (StoreError, gevent.Timeout) as exc:
                if not failing:
                    log.warning("cannot delete old audit rows (audit_retention): %s; trying "
                                "again in %.0fs", exc, PRUNE_EVERY)
                failing = True
            gevent.sleep(PRUNE_EVERY)

    def prune_now(self) -> int:
        """One pass: every audit row older than the retention goes; returns how many."""
        assert self.retention is not None
        before = self._clock() - self.retention
        total = 0
        while True:
            n = self._db(self._store.prune_audit, before, PRUNE_BATCH)
            total += n
            if n < PRUNE_BATCH:
                break
            gevent.sleep(0)  # let queued writes take the thread between batches
        self.pruned += total
        if total:
            log.info("audit_retention: deleted %d audit rows older than %s", total,
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before)))
        return total

    # -- the writer greenlet ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._work.clear()
            if not (self._queue or self._journal_dirty):
                if self._replayed is not None:
                    log.info("audit backlog written: %d buffered ops replayed", self._replayed)
                    self._replayed = None
                self._signal_progress()
                self._work.wait()
                continue
            retrying = Retrying(
                wait=self._wait,
                sleep=self._backoff,
                retry=retry_if_exception_type(Exception),
                before_sleep=self._on_failure,
                stop=stop_never,
                reraise=True,
            )
            for attempt in retrying:
                with attempt:
                    self._write_next()

    def _write_next(self) -> None:
        """Write one batch: the journal's oldest ops first, else the deque's."""
        if self._journal_dirty:
            ops, offset = self._io(self._journal.read_from, self._joff, self.batch_max)
            if ops:
                self._apply(ops)
                self._joff = offset
                self._wrote(len(ops))
            else:
                self._journal_consumed()
            return
        if self._queue:
            first = self._left
            batch = list(itertools.islice(self._queue, self.batch_max))
            self._apply(batch)
            # Ops spilled meanwhile already left the deque (and will replay harmlessly).
            still_queued = first + len(batch) - self._left
            for _ in range(max(0, still_queued)):
                self._queue.popleft()
            self._left += max(0, still_queued)
            self._wrote(len(batch))

    def _journal_consumed(self) -> None:
        """Every journaled op is committed: empty the journal, unless a spill just added ops."""
        with self._jlock:
            ops, offset = self._io(self._journal.read_from, self._joff, 1)
            if ops:
                return
            if self._journal.size() > 0:
                try:
                    self._io(self._journal.clear)
                except OSError as exc:
                    # Its ops are committed: skip them from now on (a restart replays them).
                    log.warning("cannot clear the journal %s: %s", self._journal.path, exc)
                    self._joff = offset
                    self._journal_dirty = False
                    return
            self._joff = 0
            self._journal_dirty = False

    def _apply(self, ops: list[Op]) -> None:
        try:
            self._db(self._store.apply, ops)
        except StoreDataError as exc:
            if len(ops) > 1:
                for op in ops:  # find the culprit; the others are written one by one
                    self._apply([op])
                return
            self._rejected += 1
            log.error("dropping an audit op the database rejects (%s): %s",
                      exc, json.dumps(ops[0], default=str)[:4000])

    def _wrote(self, count: int) -> None:
        self._written += count
        if not self._db_ok:
            outage = time.monotonic() - (self._outage_started or time.monotonic())
            log.warning("audit database is back after %.1fs; replaying %d queued ops and "
                        "%d journal bytes", outage, len(self._queue), self._journal.size())
            self._db_ok = True
            self._outage_started = self._outage_since = None
            self._replayed = 0
            self._state_changed(True)
        if self._replayed is not None:
            self._replayed += count
        self._signal_progress()

    def _on_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if self._db_ok:
            self._db_ok = False
            self._outage_started = time.monotonic()
            self._outage_since = self._clock()
            self._replayed = None
            self._failed("audit database write failed, buffering ops until it is back", exc,
                         first=True)
            self._state_changed(False)
        else:
            self._failed("audit database writes still fail", exc, first=False)
        if len(self._queue) > self.queue_max:
            self._spill_wanted.set()
        self._signal_progress()

    def _backoff(self, seconds: float) -> None:
        self._kick.wait(seconds)
        self._kick.clear()

    # -- spilling to the journal --------------------------------------------------------

    def _spiller(self) -> None:
        while True:
            self._spill_wanted.wait()
            self._spill_wanted.clear()
            excess = len(self._queue) - self.queue_max
            if not self._db_ok and excess > 0:
                # Down to half the limit, so an outage costs one fsync per queue_max/2 ops.
                self._spill(excess + self.queue_max // 2)

    def _spill(self, count: int) -> bool:
        """Move the `count` oldest queued ops to the journal; False if it cannot be written."""
        with self._jlock:
            count = min(count, len(self._queue))
            if count <= 0:
                return True
            first = self._left
            ops = list(itertools.islice(self._queue, count))
            try:
                self._io(self._journal.append, ops)
            except OSError as exc:
                now = time.monotonic()
                if now - self._last_spill_error >= SPILL_ERROR_LOG_INTERVAL:
                    self._last_spill_error = now
                    log.error("cannot write %d audit ops to the journal %s (%s); keeping "
                              "%d ops in memory", count, self._journal.path, exc,
                              len(self._queue))
                return False
            self._journal_dirty = True
            # The writer may have committed (and popped) some of them meanwhile.
            still_queued = first + count - self._left
            for _ in range(max(0, still_queued)):
                self._queue.popleft()
            self._left += max(0, still_queued)
            log.info("spilled %d audit ops to the journal %s", count, self._journal.path)
        self._work.set()
        self._signal_progress()
        return True

    # -- helpers ------------------------------------------------------------------------

    def _db(self, func: Callable[..., T], *args: Any) -> T:
        return call_in(self._db_pool, func, *args)

    def _io(self, func: Callable[..., T], *args: Any) -> T:
        return call_in(self._io_pool, func, *args)

    def _failed(self, what: str, exc: BaseException | None, *, first: bool) -> None:
        """Count a failed database write and log it: at once when `first`, else at most once
        per WRITE_ERROR_LOG_INTERVAL, with the number of failures since the last line."""
        self._write_failures += 1
        now = time.monotonic()
        if not first and now - self._last_write_error < WRITE_ERROR_LOG_INTERVAL:
            log.debug("%s: %s", what, exc)
            return
        since_last = self._write_failures - self._failures_logged
        self._failures_logged = self._write_failures
        self._last_write_error = now
        log.error("%s: %s (%d failed database writes since the last such line, %d since start)",
                  what, exc, since_last, self._write_failures,
                  exc_info=None if exc is None or isinstance(exc, (StoreError, gevent.Timeout))
                  else exc)

    def _signal_progress(self) -> None:
        event, self._progress = self._progress, Event()
        event.set()

    def _state_changed(self, db_ok: bool) -> None:
        callback = self.on_state
        if callback is None:
            return
        try:
            callback(db_ok)
        except Exception:  # noqa: BLE001 - a metrics hook must not stop the writer
            log.exception("on_state callback failed")

    def _crashed(self, greenlet: gevent.Greenlet) -> None:
        log.critical("the audit writer stopped: %r (%d ops queued)", greenlet.exception,
                     len(self._queue))
