"""The daemon's side of a group (issue 14) with a fake leadership connection and explicit
clocks: role changes reach the service, the metric, the audit trail and the STATUS line."""
from __future__ import annotations

from typing import Any

from esl_guard.cluster.elector import Member
from esl_guard.cluster.group import Group
from esl_guard.cluster.roles import Role, Seen
from esl_guard.metrics import Metrics


class FakeElector:
    def __init__(self) -> None:
        self.member = Member("abc", "host1", 42, 0.0)
        self.seen = Seen(reachable=True, holds=True)
        self.asked: list[bool] = []
        self.beats: list[tuple[str, float, float]] = []
        self.released = False

    def check(self, take: bool) -> Seen:
        self.asked.append(take)
        return self.seen

    def heartbeat(self, role: str, since: float, wall: float) -> None:
        self.beats.append((role, since, wall))

    def release(self) -> None:
        self.released = True


class FakeGuard:
    def __init__(self) -> None:
        self.active = True

    def set_active(self, active: bool) -> None:
        self.active = active

    def status_line(self) -> str:
        return "active" if self.active else "standby"


class Recorder:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def submit(self, op: dict[str, Any]) -> None:
        self.items.append(op)

    def status(self, line: str) -> None:
        self.items.append(line)


def group(clock: list[float]) -> tuple[Group, FakeElector, FakeGuard, Recorder, Recorder,
                                        Metrics]:
    elector, guard, writer, notifier, metrics = (FakeElector(), FakeGuard(), Recorder(),
                                                 Recorder(), Metrics())
    g = Group(elector, 10.0, guard=guard, writer=writer, metrics=metrics,  # type: ignore[arg-type]
              notifier=notifier, clock=lambda: clock[0], wall=lambda: 1000.0 + clock[0])
    return g, elector, guard, writer, notifier, metrics


def active_metric(metrics: Metrics) -> float:
    return float(metrics.registry.get_sample_value("esl_guard_active") or 0.0)


def test_a_standby_at_start_then_a_takeover() -> None:
    clock = [0.0]
    g, elector, guard, writer, notifier, metrics = group(clock)
    elector.seen = Seen(reachable=True, holds=False)
    g.first_check()
    assert g.role is Role.STANDBY and not guard.active and active_metric(metrics) == 0
    assert writer.items == []  # the role at start is no change: nothing was done before
    assert elector.beats[-1][0] == "standby"
    clock[0] = 2.0
    g.check()
    assert elector.asked == [True, False]  # a standby waits two checks before trying
    clock[0] = 4.0
    elector.seen = Seen(reachable=True, holds=True)
    g.check()
    assert elector.asked[-1] is True
    assert g.role is Role.ACTIVE and guard.active and active_metric(metrics) == 1
    [row] = writer.items
    assert row["kind"] == "role" and row["origin"] == "system"
    assert "host1 pid 42 (abc): standby -> active" in row["detail"]
    assert notifier.items == ["active"]
    assert elector.beats[-1] == ("active", 1004.0, 1004.0)


def test_the_database_unreachable_changes_no_role() -> None:
    clock = [0.0]
    g, elector, guard, writer, _, _ = group(clock)
    g.first_check()
    assert g.role is Role.ACTIVE
    elector.seen = Seen(reachable=False)
    for t in range(1, 20):
        clock[0] = float(t)
        g.check()
    assert g.role is Role.ACTIVE and guard.active and writer.items == []
    g.stop()
    assert elector.released
