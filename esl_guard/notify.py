"""Tell the operator: one JSON POST per enforcement event to the ``[notify]`` webhook.

Delivery never blocks enforcement.  :meth:`Webhook.submit` runs on the hub and only builds a
dict and puts it on a bounded queue (when full, the notification is dropped and counted).  One
greenlet takes them in order and hands each to a native worker thread (a gevent ThreadPool, as
the store does: there is no monkey-patching, so a blocking HTTP request in a greenlet would stop
the hub), where tenacity retries with exponential backoff.  At most one notification per
(account, rule, kind) is sent per ``min_interval``; the next one says how many were suppressed.

With a ``secret``, the header ``X-ESL-Guard-Signature: sha256=<hex>`` carries the HMAC-SHA256 of
the exact body bytes; a receiver recomputes it with the shared secret.  Failures are counted in
``esl_guard_notifications_total{result="failed"}`` and logged with the URL reduced to
``scheme://host:port/...`` (webhook paths and queries often carry tokens).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from gevent.queue import Full, Queue
from gevent.threadpool import ThreadPool
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from esl_guard import __version__
from esl_guard.config import NotifyConfig
from esl_guard.model import Action, clause_of
from esl_guard.store.pool import call_in

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ESL-Guard-Signature"
QUEUE_MAX = 1000
TIMEOUT = 5.0      # seconds per HTTP attempt
ATTEMPTS = 4       # tries per notification (waits 0.5 s, 1 s, 2 s between them by default)
THROTTLE_MAX = 100_000  # (account, rule, kind) keys remembered before old ones are forgotten


def sign(secret: str, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=`` + HMAC-SHA256 hex digest."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _iso(epoch: float) -> str:
    ms = int(round(epoch * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def payload(action: Action, usage: Mapping[str, Any], *, wall: float, node_name: str | None = None,
            suppressed: int = 0) -> dict[str, Any]:
    """The JSON object sent for one action (pure)."""
    doc: dict[str, Any] = {
        "time": _iso(wall), "epoch": wall, "account": action.account,
        "kind": action.kind.value, "rule": action.rule.value if action.rule else None,
        "clause": action.clause or clause_of(action.rule),
        "uuid": action.uuid, "node": action.node or node_name,
        "destination": action.destination or action.extra.get("destination"),
        "destination_class": action.destination_class,
        "observed": action.observed, "limit": action.limit,
        "usage": dict(usage), "dry_run": action.dry_run, "detail": action.detail,
        "suppressed": suppressed,
    }
    if action.kind.value == "lock":
        doc["until"] = None if action.until is None else _iso(action.until)
    return doc


class Throttle:
    """At most one notification per key per ``interval`` seconds; counts what it suppresses."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def admit(self, key: tuple[str, str, str], now: float) -> int | None:
        """None: suppress it.  Otherwise send it, with how many were suppressed before."""
        entry = self.last.get(key)
        if entry is not None and now - entry[0] < self.interval:
            self.last[key] = (entry[0], entry[1] + 1)
            return None
        self.last[key] = (now, 0)
        if len(self.last) > THROTTLE_MAX:
            self._forget(now)
        return 0 if entry is None else entry[1]

    def _forget(self, now: float) -> None:
        stale = [k for k, (t, n) in self.last.items() if now - t >= self.interval and n == 0]
        for k in stale or list(self.last)[: len(self.last) // 2]:
            del self.last[k]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failure: never re-send the body elsewhere


_OPENER = urllib.request.build_opener(_NoRedirect)


class DeliveryError(Exception):
    pass


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, (urllib.error.URLError, OSError, DeliveryError))


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float = TIMEOUT) -> int:
    """One blocking POST (run it in a worker thread); the status, or an exception."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    with _OPENER.open(request, timeout=timeout) as response:
        response.read(65536)
        status = int(response.status)
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")
    return status


class Webhook:
    """The ``[notify]`` webhook: :meth:`submit` on the hub, delivery in a worker thread."""

    def __init__(self, config: NotifyConfig, metrics: Any = None, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 attempts: int = ATTEMPTS, backoff: float = 0.5, timeout: float = TIMEOUT,
                 queue_max: int = QUEUE_MAX) -> None:
        self.config = config
        self.metrics = metrics
        self.clock, self.wall = clock, wall
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.throttle = Throttle(config.min_interval)
        self.queue: Queue[dict[str, Any]] = Queue(maxsize=queue_max)
        self.pool = ThreadPool(1)
        self._worker: gevent.Greenlet | None = None
        self._busy = False
        self.sent = self.failed = self.dropped = self.suppressed = 0

    # ------------------------------------------------------------------ on the hub
    def submit(self, action: Action, usage: Mapping[str, Any]) -> None:
        kind = action.kind.value
        if kind not in self.config.events:
            return
        key = (action.account, action.rule.value if action.rule else "-", kind)
        suppressed = self.throttle.admit(key, self.clock())
        if suppressed is None:
            self.suppressed += 1
            self._count("suppressed")
            return
        doc = payload(action, usage, wall=self.wall(), suppressed=suppressed)
        try:
            self.queue.put_nowait(doc)
        except Full:
            self.dropped += 1
            self._count("dropped")
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("notify: queue full (%d waiting), %d notifications dropped so far "
                            "(webhook %s slow or down?)", self.queue.qsize(), self.dropped,
                            self.config.safe_url)

    def start(self) -> Webhook:
        if self._worker is None:
            self._worker = gevent.spawn(self._run)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Give queued notifications ``timeout`` seconds, then stop."""
        deadline = time.monotonic() + timeout
        while (self.queue.qsize() or self._busy) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if self._worker is not None:
            self._worker.kill(block=False)
            self._worker = None
        self.pool.kill()

    def idle(self) -> bool:
        return not self.queue.qsize() and not self._busy

    # ------------------------------------------------------------------ delivery
    def _run(self) -> None:
        while True:
            doc = self.queue.get()
            self._busy = True
            try:
                body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
                call_in(self.pool, self._deliver, body)
            except Exception as exc:  # noqa: BLE001 - counted and logged, never fatal
                self.failed += 1
                self._count("failed")
                log.error("notify: %s of %s (rule %s) not delivered to %s after %d attempts: %s",
                          doc.get("kind"), doc.get("account"), doc.get("rule"),
                          self.config.safe_url, self.attempts, self._safe(exc))
            else:
                self.sent += 1
                self._count("sent")
            finally:
                self._busy = False

    def _deliver(self, body: bytes) -> None:
        """In the worker thread: POST with retries (tenacity sleeps this thread, not the hub)."""
        headers = {"Content-Type": "application/json", "User-Agent": f"esl-guard/{__version__}"}
        if self.config.secret:
            headers[SIGNATURE_HEADER] = sign(self.config.secret, body)
        for attempt in Retrying(stop=stop_after_attempt(self.attempts),
                                wait=wait_exponential(multiplier=self.backoff, max=30),
                                retry=retry_if_exception(_retryable), reraise=True):
            with attempt:
                post(self.config.webhook, body, headers, self.timeout)

    def _safe(self, exc: BaseException) -> str:
        text = f"{exc.__class__.__name__}: {exc}"
        return text.replace(self.config.webhook, self.config.safe_url)[:300]

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(result).inc()
