"""Prometheus metrics (prometheus-client).  Labels stay bounded: node, rule, action, clause (the
fixed ``model.CLAUSE_NAMES``), class (the configured destination class names and ``none``),
event name (only the names we subscribe to), result -- never an account or a number."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class _FuncCounter(Collector):
    """A counter whose value the core keeps as a plain int (no lock on the hot path)."""

    def __init__(self, name: str, doc: str, value: Callable[[], int]) -> None:
        self.name, self.doc, self.value = name, doc, value

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.doc, value=self.value())


class _EventCounts(Collector):
    """Events received by name: plain ints bumped on the hot path, exported when scraped."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("esl_guard_events", "ESL events received", labels=["event"])
        for name, n in sorted(self.counts.items()):
            family.add_metric([name], n)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.event_counts: dict[str, int] = {}
        r.register(_EventCounts(self.event_counts))
        self.active_calls = Gauge("esl_guard_active_calls", "Calls counted against accounts", registry=r)
        self.active_accounts = Gauge("esl_guard_active_accounts", "Accounts with live calls", registry=r)
        self.untracked_ended: Callable[[], int] = lambda: 0  # set by the service
        r.register(_FuncCounter("esl_guard_untracked_channels",
                                "Channels that ended without ever carrying an account",
                                lambda: self.untracked_ended()))
        self.actions = Counter("esl_guard_actions_total", "Enforcement actions",
                               ["rule", "action", "dry_run", "clause", "class"], registry=r)
        self.violations = Counter("esl_guard_violations_total", "Policy violations",
                                  ["rule", "dry_run", "clause", "class"], registry=r)
        self.notifications = Counter("esl_guard_notifications_total",
                                     "Webhook notifications by result (sent, failed, dropped: "
                                     "queue full, suppressed: within min_interval)", ["result"],
                                     registry=r)
        self.locks_active = Gauge("esl_guard_locks_active", "Accounts locked now", registry=r)
        self.connected = Gauge("esl_guard_esl_connected", "1 when the node's ESL session is up",
                               ["node"], registry=r)
        self.reconnects = Counter("esl_guard_esl_reconnects_total", "ESL reconnections", ["node"],
                                  registry=r)
        self.resyncs = Counter("esl_guard_resyncs_total", "Channel resyncs", ["node", "result"],
                               registry=r)
        self.resync_changes = Counter("esl_guard_resync_changes_total",
                                      "Calls added or dropped by resyncs", ["node", "change"],
                                      registry=r)
        self.audit_queue = Gauge("esl_guard_audit_queue_depth", "Audit rows waiting for the DB",
                                 registry=r)
        self.journal_bytes = Gauge("esl_guard_audit_journal_bytes", "Size of the local journal",
                                   registry=r)
        self.db_up = Gauge("esl_guard_database_up", "1 when the last DB write succeeded", registry=r)
        self.active = Gauge("esl_guard_active", "1 when this instance is the active one (it acts); "
                            "0 when hot standby (issue 14)", registry=r)
        self.active.set(1)
        self.db_write_failures: Callable[[], int] = lambda: 0  # set by the daemon
        r.register(_FuncCounter("esl_guard_database_write_failures",
                                "Database writes (audit batches, status) that failed",
                                lambda: self.db_write_failures()))
        self.bad_input = Counter("esl_guard_rejected_input_total",
                                 "Values from the network refused (bad uuid, unsafe account, bad frame)",
                                 ["kind"], registry=r)
        self.command_errors = Counter("esl_guard_command_errors_total",
                                      "ESL commands that failed or timed out", ["node", "command"],
                                      registry=r)
        self.latency = Histogram("esl_guard_event_to_action_seconds",
                                 "From reading the breaching event to sending the hangup",
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1),
                                 registry=r)
