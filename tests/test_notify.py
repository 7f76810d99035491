"""The [notify] webhook against a local HTTP receiver: up, down, slow, 500s; signatures,
throttling, and delivery that never blocks the hub."""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import gevent
import pytest

from esl_guard.config import NotifyConfig
from esl_guard.metrics import Metrics
from esl_guard.model import Action, ActionKind, Rule
from esl_guard.notify import Throttle, Webhook, payload, sign
from tests.harness import wait_for
from tests.webhook_receiver import Receiver

SECRET = "s3cret-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def lock(account: str = "dialer") -> Action:
    return Action(ActionKind.LOCK, account, Rule.LOCK_AFTER, limit="2/1m", observed="2/1m",
                  until=1_700_000_600.0, detail="2/1m violations", clause="mass_calling")


def violation(account: str = "robo", uuid: str = "u-1") -> Action:
    return Action(ActionKind.VIOLATION, account, Rule.SHORT_CALLS, "fs1", uuid, limit="3/1m",
                  observed="4/1m", clause="mass_calling", extra={"destination": "+4420794600"})


def hook(url: str, **kw: object) -> Webhook:
    cfg = NotifyConfig(webhook=url, secret=kw.pop("secret", SECRET),  # type: ignore[arg-type]
                       events=kw.pop("events", frozenset({"lock", "unlock", "violation"})),  # type: ignore[arg-type]
                       min_interval=kw.pop("min_interval", 600.0))  # type: ignore[arg-type]
    return Webhook(cfg, Metrics(), backoff=0.01, timeout=2.0, **kw).start()  # type: ignore[arg-type]


def test_a_lock_is_posted_signed_with_every_field(receiver: Receiver) -> None:
    w = hook(receiver.url)
    w.submit(lock(), {"active_calls": 0, "locked": True})
    w.submit(violation(), {"active_calls": 2, "locked": False})
    assert wait_for(lambda: len(receiver.requests) == 2)
    assert receiver.signed(SECRET)
    first, second = receiver.docs()
    assert first["kind"] == "lock" and first["account"] == "dialer"
    assert first["clause"] == "mass_calling" and first["until"].endswith("Z")
    assert second == {**second, "kind": "violation", "rule": "max_short_calls", "uuid": "u-1",
                      "node": "fs1", "destination": "+4420794600", "observed": "4/1m",
                      "limit": "3/1m", "usage": {"active_calls": 2, "locked": False},
                      "suppressed": 0}
    assert {"time", "epoch"} <= set(second)
    w.stop()


def test_signature_is_of_the_exact_body() -> None:
    body = b'{"a":1}'
    assert sign("k", body) == sign("k", body) != sign("k", body + b" ")
    assert sign("k", body).startswith("sha256=") and len(sign("k", body)) == 7 + 64


def test_500s_are_retried_until_delivered(receiver: Receiver) -> None:
    receiver.fail = 2
    w = hook(receiver.url)
    w.submit(lock(), {})
    # the receiver records the request before the sender counts its 200
    assert wait_for(lambda: len(receiver.requests) == 1 and w.sent == 1)
    assert receiver.attempts == 3 and w.failed == 0
    w.stop()


def test_a_receiver_that_is_down_is_counted_and_logged_without_credentials(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://user:hunter2@127.0.0.1:{port}/hooks/T0KEN123?key=abc"
    w = hook(url, attempts=2)
    with caplog.at_level(logging.ERROR, logger="esl_guard.notify"):
        w.submit(lock(), {})
        assert wait_for(lambda: w.failed == 1)
    assert w.metrics.notifications.labels("failed")._value.get() == 1
    text = caplog.text
    assert "not delivered" in text and f"http://127.0.0.1:{port}/..." in text
    assert "hunter2" not in text and "T0KEN123" not in text and "key=abc" not in text
    w.stop()


def test_a_slow_receiver_never_blocks_the_hub(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    w = hook(receiver.url, queue_max=3, min_interval=0.0)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(1) or gevent.sleep(0.01) for _ in range(1000)])
    for i in range(10):  # one in flight (held by the receiver), 3 queued, the rest dropped
        w.submit(violation(uuid=f"u-{i}"), {})
        gevent.sleep(0.02)
    assert wait_for(lambda: receiver.attempts == 1)
    before = len(ticks)
    assert wait_for(lambda: len(ticks) > before + 5)  # the hub runs while the POST hangs
    assert w.dropped == 6 and w.metrics.notifications.labels("dropped")._value.get() == 6
    receiver.hold.set()
    assert wait_for(lambda: len(receiver.requests) == 4)
    ticker.kill()
    w.stop()


def test_at_most_one_per_account_rule_and_kind_per_interval(receiver: Receiver) -> None:
    now = [0.0]
    w = hook(receiver.url, clock=lambda: now[0])
    w.submit(violation("robo"), {})
    w.submit(violation("robo"), {})        # suppressed
    w.submit(violation("robo"), {})        # suppressed
    w.submit(violation("other"), {})       # another account: sent
    w.submit(lock("robo"), {})             # another kind: sent
    now[0] = 601.0
    w.submit(violation("robo"), {})        # the next one says how many were suppressed
    assert wait_for(lambda: len(receiver.requests) == 4)
    docs = receiver.docs()
    assert [(d["account"], d["kind"], d["suppressed"]) for d in docs] == [
        ("robo", "violation", 0), ("other", "violation", 0), ("robo", "lock", 0),
        ("robo", "violation", 2)]
    assert w.suppressed == 2
    w.stop()


def test_kinds_not_listed_are_not_sent(receiver: Receiver) -> None:
    w = hook(receiver.url, events=frozenset({"lock"}))
    w.submit(violation(), {})
    w.submit(lock(), {})
    assert wait_for(lambda: len(receiver.requests) == 1)
    assert receiver.docs()[0]["kind"] == "lock"
    w.stop()


def test_throttle_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import esl_guard.notify as notify

    monkeypatch.setattr(notify, "THROTTLE_MAX", 100)
    t = Throttle(10.0)
    for i in range(1000):
        assert t.admit((f"a{i}", "r", "violation"), float(i)) == 0
    assert len(t.last) <= 101


def test_payload_of_an_unlock() -> None:
    doc = payload(Action(ActionKind.UNLOCK, "acme", None, clause="locked"), {}, wall=0.0)
    assert doc["kind"] == "unlock" and doc["clause"] == "locked" and "until" not in doc
    assert doc["time"] == "1970-01-01T00:00:00.000Z"
