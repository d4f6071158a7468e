"""Prometheus metrics of one service process (prometheus_client, a registry per service so that tests
and several services in one process do not mix their numbers).

With several workers each process counts its own requests; every series carries a `worker` label so
that a scrape of each worker (or of whichever answers) is still unambiguous.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The `_created` series would double every metric for no use here.
disable_created_metrics()

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
        self.log_records = Counter("synapse_decision_log_records", "Records appended to the decision log.",
                                   w, registry=r)
        self._decision_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
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
        self.requests.labels(self.worker, route, str(status)).inc()

    def loaded(self, policy: str) -> None:
        self.artifact_loads.labels(self.worker, policy).inc()

    def rejected(self, code: str) -> None:
        self.artifact_rejections.labels(self.worker, code).inc()

    def set_state(self, served: int, ledger_reachable: bool) -> None:
        self.served.labels(self.worker).set(served)
        self.ledger_up.labels(self.worker).set(1 if ledger_reachable else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
