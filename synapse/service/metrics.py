"""Prometheus metrics of one service process (prometheus_client, a registry per service so that tests
and several services in one process do not mix their numbers).

With several workers each process counts its own requests; every series carries a `worker` label so
that a scrape of each worker (or of whichever answers) is still unambiguous.

Label values come from closed sets fixed in the code (policy names and located error codes, command
names, outcome words): never free text, never a value from a message, so no secret and no
attacker-chosen string can reach a label, and no label set can grow without bound. A code outside
its set is counted as `other`. docs/service.md lists every series.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from axon.messaging.errors import MessagingError
from axon.transports.scp_errors import ScpError

# The `_created` series would double every metric for no use here.
disable_created_metrics()


def _codes(root: type) -> frozenset[str]:
    found, todo = set(), [root]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return frozenset(found)


OTHER = "other"
# SIP-017 messages to this node that were not acted on: the receiver's drop codes, the sender's
# authority for a LOG/ALERT, and well-formed messages of a type this node does not know.
UNKNOWN_TYPE = "ignored-unknown-type"
DROP_REASONS = _codes(MessagingError) | {UNKNOWN_TYPE}
COMMAND_NAMES = frozenset({"ping", "load", "unload", "set_context", "key_exchange"})
COMMAND_OUTCOMES = ("executed", "refused", "failed")
# An alert decided on (`sent`, as synapse.sidecar.alerts.Alerter counts it) or held back; then each
# recipient's copy is `posted` on the ledger or `failed`.
ALERT_OUTCOMES = ("sent", "suppressed_duplicate", "suppressed_rate")
DELIVERY_OUTCOMES = ("posted", "failed")
SCP_REFUSALS = _codes(ScpError)

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
GAS_BUCKETS = (10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 100_000, 1_000_000)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, worker: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.worker = str(worker)
        r, w = self.registry, ["worker"]
        self._decisions = DecisionTally(self.worker)
        r.register(self._decisions)
        self.artifact_loads = Counter("synapse_artifact_loads", "Artifacts verified by Axon and loaded.",
                                      w + ["policy"], registry=r)
        self.artifact_rejections = Counter("synapse_artifact_rejections",
                                           "Artifacts refused (verification failed, revoked, superseded), "
                                           "by reason code.", w + ["code"], registry=r)
        self.requests = Counter("synapse_http_requests", "HTTP requests, by route and status.",
                                w + ["route", "status"], registry=r)
        self.served = Gauge("synapse_artifacts_served", "Artifacts currently served.", w, registry=r)
        self.ledger_up = Gauge("synapse_ledger_reachable", "1 when the last ledger check succeeded.", w,
                               registry=r)
        self.ledger_rolled_back = Gauge("synapse_ledger_rolled_back", "1 while the ledger does not hold "
                                        "the head this node verified (cut short or rewritten): alert on it.",
                                        w, registry=r)
        self.messages_dropped = Counter("synapse_sip017_messages_dropped",
                                        "SIP-017 messages to this node not acted on, by reason code.",
                                        w + ["reason"], registry=r)
        self.commands = Counter("synapse_commands", "SIP-017 commands (CMD, KEY_EXCHANGE), by command "
                                "and outcome (executed, refused, failed).", w + ["command", "outcome"],
                                registry=r)
        self.alerts = Counter("synapse_alerts", "Alerts decided on (sent) or held back "
                              "(suppressed_duplicate, suppressed_rate).", w + ["outcome"], registry=r)
        self.alert_deliveries = Counter("synapse_alert_deliveries", "Alert copies per recipient, posted on "
                                        "the ledger or the MQTT broker, or failed.", w + ["outcome"],
                                        registry=r)
        self.scp_refusals = Counter("synapse_scp_connections_refused", "SCP connections refused or failed "
                                    "before they were established, by reason code.", w + ["reason"],
                                    registry=r)
        self.ledger_head = Gauge("synapse_ledger_head_seq", "The ledger's head sequence number at the last "
                                 "successful read (-1: none yet).", w, registry=r)
        self.ledger_lag = Gauge("synapse_ledger_follow_lag_seconds", "Seconds since the last successful "
                                "ledger read, at scrape time (+Inf: none yet): how old the ledger facts "
                                "served are.", w, registry=r)
        for reason in sorted(DROP_REASONS):
            self.messages_dropped.labels(self.worker, reason)
        for command in sorted(COMMAND_NAMES):
            for outcome in COMMAND_OUTCOMES:
                self.commands.labels(self.worker, command, outcome)
        for outcome in ALERT_OUTCOMES:
            self.alerts.labels(self.worker, outcome)
        for outcome in DELIVERY_OUTCOMES:
            self.alert_deliveries.labels(self.worker, outcome)
        self._request_children: dict[tuple[str, int], Counter] = {}

    def decision(self, policy: str, verdict: str, gas: int | None, seconds: float) -> None:
        """One evaluation (the hot path: see DecisionTally)."""
        self._decisions.record(policy, verdict, gas, seconds)

    def request(self, route: str, status: int) -> None:
        child = self._request_children.get((route, status))
        if child is None:  # labels() costs more than the increment; routes and statuses are few
            child = self._request_children[(route, status)] = self.requests.labels(self.worker, route,
                                                                                    str(status))
        child.inc()

    def loaded(self, policy: str) -> None:
        self.artifact_loads.labels(self.worker, policy).inc()

    def rejected(self, code: str) -> None:
        self.artifact_rejections.labels(self.worker, code).inc()

    def message_dropped(self, code: str) -> None:
        self.messages_dropped.labels(self.worker, _closed(code, DROP_REASONS)).inc()

    def command(self, command: str, outcome: str) -> None:
        name, result = _closed(command, COMMAND_NAMES), _closed(outcome, COMMAND_OUTCOMES)
        self.commands.labels(self.worker, name, result).inc()

    def alert(self, outcome: str) -> None:
        """`outcome` as synapse.sidecar.alerts.Alerter counts it (its `on_count` hook)."""
        self.alerts.labels(self.worker, _closed(outcome, ALERT_OUTCOMES)).inc()

    def alert_delivery(self, posted: bool) -> None:
        self.alert_deliveries.labels(self.worker, "posted" if posted else "failed").inc()

    def scp_refused(self, error: ScpError) -> None:
        """For `axon.transports.scp.serve(..., on_refused=metrics.scp_refused)`."""
        self.scp_refusals.labels(self.worker, _closed(error.code, SCP_REFUSALS)).inc()

    def watch_ledger(self, head: Callable[[], int | None], last_ok: Callable[[], float | None],
                     clock: Callable[[], float] = time.time) -> None:
        """Read the ledger head and the follow lag from their owner (the service's LedgerLink) at
        every scrape, so a stuck follower shows a growing lag rather than its last value."""

        def lag() -> float:
            ok = last_ok()
            return math.inf if ok is None else max(0.0, clock() - ok)

        self.ledger_head.labels(self.worker).set_function(lambda: -1 if head() is None else head())
        self.ledger_lag.labels(self.worker).set_function(lag)

    def set_state(self, served: int, ledger_reachable: bool, ledger_rolled_back: bool) -> None:
        self.served.labels(self.worker).set(served)
        self.ledger_up.labels(self.worker).set(1 if ledger_reachable else 0)
        self.ledger_rolled_back.labels(self.worker).set(1 if ledger_rolled_back else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _closed(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else OTHER


class DecisionTally(Collector):
    """The per-decision series (synapse_decisions_total, synapse_evaluate_seconds, synapse_gas_used,
    synapse_decision_log_records_total) as plain numbers under one lock, made into Prometheus families
    only when scraped. Through prometheus_client's Counter and Histogram objects a decision paid four
    updates, each with its own checks and lock: 31,000 instructions, more than its decision-log record
    takes to serialise and hash (benchmarks/bench_service_instructions.py). Same names, labels, buckets
    and values as those objects gave; the latency histogram and the record counter exist from start."""

    def __init__(self, worker: str) -> None:
        self._worker = worker
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}  # (policy, verdict) -> decisions
        self._gas: dict[str, list[float]] = {}  # policy -> per-bucket counts (the last: +Inf), then the sum
        self._latency: list[float] = [0] * (len(LATENCY_BUCKETS) + 2)
        self._records = 0

    def record(self, policy: str, verdict: str, gas: int | None, seconds: float) -> None:
        with self._lock:
            key = (policy, verdict)
            self._counts[key] = self._counts.get(key, 0) + 1
            if gas is not None:
                tally = self._gas.get(policy)
                if tally is None:
                    tally = self._gas[policy] = [0] * (len(GAS_BUCKETS) + 2)
                tally[bisect_left(GAS_BUCKETS, gas)] += 1  # the first bucket whose bound is >= gas
                tally[-1] += gas
            latency = self._latency
            latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            latency[-1] += seconds
            self._records += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, records = dict(self._counts), self._records
            gas = {policy: list(tally) for policy, tally in self._gas.items()}
            latency = list(self._latency)
        worker = self._worker
        decisions = CounterMetricFamily("synapse_decisions", "Decisions made, by policy and verdict.",
                                        labels=["worker", "policy", "verdict"])
        for (policy, verdict), count in counts.items():
            decisions.add_metric([worker, policy, verdict], count)
        yield decisions
        seconds = HistogramMetricFamily("synapse_evaluate_seconds", "Time to evaluate one input (checks, "
                                        "sandbox call, decision log).", labels=["worker"])
        seconds.add_metric([worker], _buckets(LATENCY_BUCKETS, latency), latency[-1])
        yield seconds
        used = HistogramMetricFamily("synapse_gas_used", "Gas used per evaluation, by policy.",
                                     labels=["worker", "policy"])
        for policy, tally in gas.items():
            used.add_metric([worker, policy], _buckets(GAS_BUCKETS, tally), tally[-1])
        yield used
        logged = CounterMetricFamily("synapse_decision_log_records", "Records appended to the decision log.",
                                     labels=["worker"])
        logged.add_metric([worker], records)
        yield logged


def _buckets(bounds: tuple[float, ...], tally: list[float]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs, +Inf last, from per-bucket counts (the tally's last item is its sum)."""
    out, total = [], 0.0
    for bound, count in zip((*bounds, math.inf), tally[:-1], strict=True):
        total += count
        out.append((floatToGoString(bound), total))
    return out
