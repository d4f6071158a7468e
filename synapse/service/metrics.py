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
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

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
        self.decisions = Counter("synapse_decisions", "Decisions made, by policy and verdict.",
                                 w + ["policy", "verdict"], registry=r)
        self.latency = Histogram("synapse_evaluate_seconds",
                                 "Time to evaluate one input (checks, sandbox call, decision log).",
                                 w, buckets=LATENCY_BUCKETS, registry=r)
        self.gas = Histogram("synapse_gas_used", "Gas used per evaluation, by policy.", w + ["policy"],
                             buckets=GAS_BUCKETS, registry=r)
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
        self.log_records = Counter("synapse_decision_log_records", "Records appended to the decision log.",
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
        self._decision_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency = self.latency.labels(self.worker)
        self._log_records = self.log_records.labels(self.worker)

    def decision(self, policy: str, verdict: str, gas: int | None, seconds: float) -> None:
        """One evaluation: the hot path, so the labelled children are cached."""
        children = self._decision_children.get((policy, verdict))
        if children is None:
            children = (self.decisions.labels(self.worker, policy, verdict),
                        self.gas.labels(self.worker, policy))
            self._decision_children[(policy, verdict)] = children
        children[0].inc()
        if gas is not None:
            children[1].observe(gas)
        self._latency.observe(seconds)
        self._log_records.inc()

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
