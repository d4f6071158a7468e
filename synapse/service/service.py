"""`PolicyService`: the service core the HTTP layer and the sidecar drive (no HTTP here).

It wires the parts together: the artifact store and registry (verified through Axon), the ledger
link, the decision log, authentication, rate limits and metrics; and it is the one place where a
decision is made and logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from axon.constraint_node import ConstraintNode, TransactionMessage, attestation
from axon.keys import Identity
from axon.ledger import Ledger, LedgerError, ops
from axon.verify import Verifier
from synapse.decision import Decision
from synapse.evaluate import Evaluator
from synapse.hardening import locked_bytearray, wipe
from synapse.inputs import Reading
from synapse.sandbox import Limits
from synapse.service import logs
from synapse.service.auth import Authenticator, Principal
from synapse.service.config import ServiceConfig, is_loopback_host
from synapse.service.decision_log import AnchorSchedule, DecisionLog, Masker, load_mask_key, verify_log
from synapse.service.errors import DecisionLogError, RequestInvalid, ServiceError
from synapse.service.ledger_link import LedgerLink, chain_opener, ledger_opener
from synapse.service.live import DecisionFeed, Deliver
from synapse.service.metrics import Metrics
from synapse.service.node_state import FILE_NAME as NODE_STATE_FILE
from synapse.service.node_state import NodeState
from synapse.service.ratelimit import RateLimiter
from synapse.service.registry import Registry, version_key
from synapse.service.store import ArtifactStore

STOP_WAIT_S = 30  # longest a stop waits for background work (a ledger step, an alert being sent)
_REJECTION_EVENTS = {"artifact_revoked", "artifact_superseded", "artifact_rejected", "artifact_expired"}
_LOOPBACK = Principal("loopback", frozenset(), "open")
# What each stored state means for the operator page, in plain words; the stored reason says the details.
_NOT_SERVED = {
    "revoked": "revoked on the ledger",
    "superseded": "superseded on the ledger by another artifact",
    "retired": "retired by an administrator",
    "rejected": "refused by Axon on a later check",
    "active": "stored, but it could not be verified or loaded",
}


def _ledger_link(config: ServiceConfig, identity: Identity, clock: Callable[[], float], node_state: NodeState,
                 events: Callable[..., None]) -> LedgerLink:
    """The link to the ledger file, or to the node's index of the ledger on a chain, opened from the
    node's own newest checkpoint (it trusts no other key's). On a chain the chain is the reference each
    follow step checks the index against (block hashes; a reorganisation is rewound), so the remembered
    head, which only moves forward, is for a ledger file."""
    cfg = config.ledger
    trusted = [identity.key.public_key]
    checkpoints = {"checkpoint_signer": identity.key, "checkpoint_every": cfg.checkpoint_every}
    if cfg.chain_url is None:
        return LedgerLink(cfg.path, clock, heads=node_state, events=events, opener=ledger_opener(trusted),
                          **checkpoints)
    return LedgerLink(cfg.local_file(config.store.path), clock, events=events,
                      opener=chain_opener(cfg.chain_url, cfg.confirmations, cfg.start_block, trusted),
                      **checkpoints)


class PolicyService:
    def __init__(self, config: ServiceConfig, identity: Identity, *, worker: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.identity = identity
        self.worker = worker
        self._clock = clock
        self.metrics = Metrics(worker)
        self._node_state = NodeState(config.store.path / NODE_STATE_FILE)
        self._link = _ledger_link(config, identity, clock, self._node_state, self._event)
        self.metrics.watch_ledger(lambda: self._link.head_seq, lambda: self._link.last_ok, clock)
        self._store = ArtifactStore(config.store.path)
        self._registry = Registry(self._store, self._link, self._verify, self._make_evaluator,
                                 events=self._event, clock=clock)
        self._auth = Authenticator(config.auth, identity.did, self._signer_key, self._node_state, clock)
        self._limiter = RateLimiter(config.limits.rate, config.limits.burst)
        self._limits = Limits(deadline_ms=config.limits.eval_timeout_ms)
        self._feed = DecisionFeed()
        self._verify_config = config.limits.verify_config()
        self._log: DecisionLog | None = None
        self._anchors = AnchorSchedule(config.decision_log.anchor_every, config.decision_log.anchor_interval)
        self.state = "starting"
        # Background work in threads (follower steps, alerts, command polls) outlives the asyncio task
        # that awaited it when that task is cancelled at shutdown; stop() waits for it (see activity()),
        # since closing the ledger and node state under it would use closed connections.
        self._activity = threading.Condition()
        self._active = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, preload: list[Path] | None = None) -> None:
        """Open the store and the decision log, load `preload` artifacts and everything stored."""
        cfg = self.config.decision_log
        self._store.open()
        masker = None
        if cfg.mask:
            key_path = cfg.mask_key or self.config.store.path / "decision-mask.key"
            masker = Masker(load_mask_key(key_path), cfg.mask)
        self._log = DecisionLog(cfg.path, self.identity, stream=f"w{self.worker}",
                               rotate_bytes=cfg.rotate_bytes, seal_every=cfg.seal_every,
                               seal_interval=cfg.seal_interval, fsync_interval=cfg.fsync_interval,
                               masker=masker, clock=self._clock).open()
        if self.config.ledger.path is None:
            logs.event("no_ledger_configured", logging.WARNING,
                       reason="without a ledger Axon can verify nothing: only stored artifacts with their "
                              "last known ledger facts can be served")
        for path in preload or []:
            self.preload(path)
        self._registry.refresh(force=True)
        self._update_gauges()
        self.state = "running"
        logs.event("service_started", worker=self.worker, served=len(self._registry.view.servable),
                   ledger_reachable=self._link.reachable)

    def preload(self, path: Path) -> None:
        """Upload an artifact file at start (config or flag). A refusal is logged, not fatal."""
        try:
            artifact, _ = self.upload(Path(path).read_bytes())
            logs.event("artifact_preloaded", path=str(path), urn=artifact["urn"], policy=artifact["policy"])
        except OSError as exc:
            logs.event("artifact_preload_failed", logging.ERROR, path=str(path), reason=exc.strerror)
        except ServiceError as exc:
            logs.event("artifact_preload_failed", logging.ERROR, path=str(path), code=exc.code,
                       reason=exc.message)

    def upload(self, data: bytes) -> tuple[dict[str, Any], bool]:
        """Verify through Axon and store: the artifact's description and whether it is new. A refusal is
        counted by its code and re-raised."""
        try:
            entry, created = self._registry.upload(data)
        except ServiceError as exc:
            self.metrics.rejected(exc.code)
            logs.event("artifact_refused", logging.WARNING, worker=self.worker, code=exc.code,
                       reason=exc.message)
            raise
        return self._registry.describe(entry), created

    def stop(self) -> None:
        """Seal and close the decision log (nothing logged is lost), anchor its final seal, release the
        ledger. Waits for background work in progress (activity()); later work does nothing."""
        with self._activity:
            self.state = "stopping"
            if not self._activity.wait_for(lambda: self._active == 0, timeout=STOP_WAIT_S):
                logs.event("stop_waited", logging.WARNING, worker=self.worker, busy=self._active,
                           reason=f"background work still running after {STOP_WAIT_S} s; stopping anyway")
            if self._log is not None:
                self._log.close()
                self.anchor_log(force=True)
            self._link.close()
            self._node_state.close()
            self.state = "stopped"
        logs.event("service_stopped", worker=self.worker)

    @contextlib.contextmanager
    def activity(self) -> Iterator[bool]:
        """Background work that stop() waits for: `with service.activity() as running:`, and do nothing
        when `running` is False (the service is stopping or stopped)."""
        with self._activity:
            running = self.state == "running"
            if running:
                self._active += 1
        try:
            yield running
        finally:
            if running:
                with self._activity:
                    self._active -= 1
                    self._activity.notify_all()

    def follow(self) -> None:
        """One follower step: store changes, ledger changes, expiry (blocking I/O: run it off the loop).
        Does nothing once the service is stopping."""
        with self.activity() as running:
            if not running:
                return
            try:
                self._registry.refresh()
            finally:
                self._update_gauges()
                self.anchor_log()

    def anchor_log(self, *, force: bool = False) -> None:
        """Post the decision log's latest seal on the ledger (LOG_ANCHOR, signed by the node key) when
        the schedule says so, or now with `force`. Never raises: a failure is logged and retried later."""
        log = self._log
        now = self._clock()
        if log is None or self.config.ledger.path is None:
            return
        if not (self._anchors.due(log.head[0], now) or (force and log.head[0] > self._anchors.anchored_seq)):
            return
        try:
            seq, head = log.seal()
            op = ops.log_anchor(self.identity.did, log.stream_id, seq, head)
            entry = self._link.ledger().sign_and_submit(self.identity, op, int(now))
        except (ServiceError, LedgerError, DecisionLogError) as exc:
            self._anchors.attempted(now, None)
            logs.event("log_anchor_failed", logging.WARNING, worker=self.worker, code=exc.code,
                       reason=str(exc))
            return
        self._anchors.attempted(now, seq)
        logs.event("log_anchored", worker=self.worker, stream_id=log.stream_id, seq=seq, ledger_seq=entry.seq)

    # -- deciding ------------------------------------------------------------------------------------

    def evaluate(self, policy: str, telemetry: dict[str, Any], context: dict[str, Any], *,
                 source: str = "http", refusal: str | None = None, explain: bool = False) -> Decision:
        """Decide and log; the decision as recorded. Raises PolicyUnknown/PolicyNotServed before deciding,
        DecisionLogError when the decision cannot be logged (it is then not returned: an unlogged decision
        does not exist). With `refusal` the module is not run: the decision is DENY with that reason (the
        plant's inputs are missing, stale or bad: docs/plc.md), logged like any other. With `explain` the
        decision carries its explanation (Evaluator.explain); the log records the decision without it."""
        served = self._registry.resolve(policy)
        start = time.perf_counter()
        try:
            if refusal is not None:
                decision = Decision.deny(refusal)
            elif explain:
                decision = served.evaluator.explain(telemetry, context)
            else:
                decision = served.evaluator.evaluate(telemetry, context)
        except Exception as exc:  # Evaluator.evaluate never raises; if it ever does, it fails safe
            decision = Decision.deny(f"internal error in the runtime: {type(exc).__name__}", gas_used=None)
        logged = decision.to_dict()
        logged.pop("explanation", None)
        decision_id = self._open_log().append_decision(logged, telemetry, context, policy=served.policy,
                                                       urn=served.urn, version=served.version, source=source)
        elapsed = time.perf_counter() - start
        self.metrics.decision(served.policy, logged["verdict"], decision.gas_used, elapsed)
        recorded = decision.recorded(decision_id, served.policy, served.urn, served.version)
        shown = recorded.to_dict()
        shown.pop("explanation", None)  # the live feed shows decisions as the log has them
        self._feed.record(shown, latency_s=elapsed, source=source, now=self._clock())
        return recorded

    def evaluate_batch(self, default_policy: str | None, readings: Sequence[Reading], *,
                       explain: bool = False) -> list[Decision | ServiceError]:
        """Decide each reading in order, under its own policy or else `default_policy`: its decision, or
        why it was not decided (an unknown or unserved policy: that reading's answer is DENY). The whole
        batch is refused (RequestInvalid) when it is longer than limits.max_batch or a reading has no
        policy; it stops at a decision that cannot be logged (DecisionLogError)."""
        max_batch = self.config.limits.max_batch
        if len(readings) > max_batch:
            raise RequestInvalid(f"a batch holds at most {max_batch} inputs (limits.max_batch)",
                                 errors=[{"pointer": "/inputs", "message": f"{len(readings)} inputs"}])
        policies = [reading.policy or default_policy for reading in readings]
        for i, policy in enumerate(policies):
            if policy is None:
                raise RequestInvalid("every input needs a policy, or the batch a default one",
                                     errors=[{"pointer": f"/inputs/{i}/policy", "message": "missing"}])
        results: list[Decision | ServiceError] = []
        for policy, reading in zip(policies, readings, strict=True):
            try:
                results.append(self.evaluate(policy, reading.telemetry, reading.context,  # type: ignore[arg-type]
                                             explain=explain))
            except DecisionLogError:
                raise
            except ServiceError as exc:
                results.append(exc)
        return results

    def record_event(self, name: str, /, **fields: Any) -> None:
        """An event in the decision log (DecisionLogError when it cannot be written)."""
        self._open_log().append_event(name, **fields)

    def _open_log(self) -> DecisionLog:
        if self._log is None:  # start() opens it, before anything can decide
            raise DecisionLogError("the decision log is not open")
        return self._log

    # -- administration ------------------------------------------------------------------------------

    def authorize(self, headers: Mapping[str, str], method: str, target: str, body: bytes,
                  scope: str) -> Principal:
        """Who sent the request, if allowed `scope` (AuthRequired or Forbidden otherwise)."""
        principal = self._auth.authenticate(headers, method, target, body)
        self._auth.require(principal, scope)
        return principal

    def admit(self, client: str) -> None:
        """One request from `client` against the rate limit (RateLimited when it is over)."""
        self._limiter.check(client)

    def artifacts(self) -> list[dict[str, Any]]:
        """Every stored artifact, by URN, with its state."""
        index = self._store.index()
        return [self._registry.describe(entry) for _, entry in sorted(index.artifacts.items())]

    def artifact(self, urn: str) -> dict[str, Any]:
        return self._registry.describe(self._registry.entry(urn))

    def retire(self, urn: str, *, by: str) -> dict[str, Any]:
        """Stop serving an artifact (it stays stored, marked retired); `by` is recorded in the log."""
        entry = self._registry.retire(urn)
        logs.event("admin_retire", urn=urn, by=by)
        return self._registry.describe(entry)

    def reactivate(self, urn: str, *, by: str) -> dict[str, Any]:
        """Serve a retired artifact again (when Axon still accepts it); `by` is recorded in the log."""
        entry = self._registry.reactivate(urn)
        logs.event("admin_reactivate", urn=urn, by=by)
        return self._registry.describe(entry)

    def policies(self) -> list[dict[str, Any]]:
        return self._registry.policies()

    def served_policies(self) -> list[str]:
        """The names of the policies served now, sorted."""
        return sorted(self._registry.view.active)

    def ledger(self) -> Ledger:
        """The ledger this node follows (ServiceError when it cannot be opened)."""
        return self._link.ledger()

    @property
    def node_state(self) -> NodeState:
        """What the node remembers across workers and restarts (the SIP-017 nonces of the MQTT inbox too)."""
        return self._node_state

    def rollback(self, policy: str, urn: str, *, by: str) -> dict[str, Any]:
        """Serve an older artifact of `policy` (a pin); what is served now."""
        served = self._registry.rollback(policy, urn)
        logs.event("admin_rollback", policy=policy, urn=urn, by=by)
        return served.summary()

    def unpin(self, policy: str, *, by: str) -> None:
        self._registry.unpin(policy)
        logs.event("admin_unpin", policy=policy, by=by)

    # -- the constraint-node protocol ------------------------------------------------------------------

    def attest_log_head(self) -> bytes:
        """What this node attests when provisioned: its latest decision-log head (canonical JSON)."""
        log = self._log
        seq, head = log.head if log is not None else (0, "")
        return attestation({"type": "sopcos-decision-log-head", "node": self.identity.did,
                            "stream": None if log is None else log.stream, "seq": seq, "head": head})

    def provisioner(self) -> Callable[[bytes], TransactionMessage]:
        """Answers a Provisioning-Message with a transaction signed by the node key over `attest_log_head`,
        for the ledger's chain. Raises ServiceError when the ledger (for its chain id) cannot be read:
        without it the node would sign transactions replayable on any chain."""
        chain_id = self._link.ledger().chain_id
        node = ConstraintNode(self.identity.key)
        return lambda body: node.respond(body, self.attest_log_head, chain_id)

    # -- the operator page (docs/service.md, "The operator page") ------------------------------------

    def authorize_view(self, headers: Mapping[str, str], method: str, target: str,
                       client: str | None) -> Principal:
        """Who may read the operator page's data: a loopback client that asked for a loopback address, or
        else the evaluate scope. The address asked for counts too: a web page whose name an attacker
        makes resolve to 127.0.0.1 (DNS rebinding) reaches loopback from the operator's browser, but
        with its own name in the Host header."""
        asked = _host_name(headers.get("host", ""))
        if client is not None and is_loopback_host(client) and is_loopback_host(asked):
            return _LOOPBACK
        return self.authorize(headers, method, target, b"", "evaluate")

    def watch_decisions(self, deliver: Deliver) -> Callable[[], None]:
        """Hand each later decision of this worker (without its inputs) to `deliver`, in the deciding
        thread, until the returned function is called."""
        key = self._feed.watch(deliver)
        return lambda: self._feed.unwatch(key)

    def recent_decisions(self) -> dict[str, Any]:
        """This worker's latest decisions (without inputs) and its per-minute statistics of the last hour."""
        return {"worker": self.worker, "decisions": self._feed.recent(),
                "stats": self._feed.stats(self._clock())}

    def overview(self) -> dict[str, Any]:
        """Readiness, the ledger and how old the node's view of it is, every policy with its artifacts
        (signer, level, state, and why it is not served), and the decision log's last seal."""
        ready, detail = self.readiness()
        last_ok = self._link.last_ok
        artifacts: dict[str, list[dict[str, Any]]] = {}
        for artifact in self.artifacts():
            why = None if artifact["served"] else _why_not_served(artifact)
            artifacts.setdefault(artifact["policy"], []).append({**artifact, "why_not_served": why})
        policies = []
        for policy in self.policies():
            held = sorted(artifacts.get(policy["policy"], []), key=lambda a: (version_key(a["version"]),
                                                                              a["added_at"]), reverse=True)
            active = next((a for a in held if a["active"]), None)
            policies.append({**policy, "signer": active and active["kid"],
                             "authority_level": active and f"LVL_{active['authority_level']}",
                             "artifacts": held})
        log = self._log
        sealed = (0, "") if log is None else log.sealed_head
        return {
            "node": self.identity.did, "worker": self.worker, "workers": self.config.server.workers,
            "ready": ready, "status": detail["status"],
            "serving_last_known_good": detail["serving_last_known_good"],
            "ledger": {**detail["ledger"], "follow_interval": self.config.ledger.follow_interval,
                       "follow_lag_seconds": None if last_ok is None else round(self._clock() - last_ok, 3)},
            "policies": policies,
            "decision_log": None if log is None else {
                "stream": log.stream, "stream_id": log.stream_id, "head_seq": log.head[0],
                "sealed_seq": sealed[0], "sealed_hash": sealed[1], "unsealed": log.head[0] - sealed[0]},
        }

    def verify_decision_log(self) -> dict[str, Any]:
        """The check of `synapse decisions verify LOG --node-key KEY --allow-unsealed-tail --ledger L` on
        this node's log, with this node's key (a running node has records after its last seal)."""
        notes = []
        ledger = None
        if self.config.ledger.path is not None:
            try:
                ledger = self._link.ledger()
            except ServiceError as exc:
                notes.append(f"the ledger could not be read ({exc.message}): anchors were not checked")
        reports = verify_log(self.config.decision_log.path, self.identity.key.public_key,
                             allow_unsealed_tail=True, ledger=ledger)
        return {"ok": all(r.ok for r in reports), "checked_against_ledger": ledger is not None,
                "streams": [r.to_dict() for r in reports], "notes": notes, "checked_at": self._clock()}

    # -- reporting -----------------------------------------------------------------------------------

    def count_request(self, route: str, status: int) -> None:
        self.metrics.request(route, status)

    def render_metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type."""
        return self.metrics.render(), self.metrics.content_type

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        view, link = self._registry.view, self._link
        loaded = self._registry.loaded_once and self.state == "running"
        last_known_good = not link.reachable or self._registry.offline
        status = "starting" if not loaded else ("degraded" if last_known_good else "ready")
        detail = {
            "status": status,
            "node": self.identity.did,
            "serving_last_known_good": loaded and last_known_good,
            "ledger": {"configured": link.path is not None, "reachable": link.reachable,
                       "error": link.error, "last_ok": link.last_ok, "head_seq": link.head_seq,
                       "rolled_back": link.rolled_back},
            "artifacts_served": len(view.servable),
            "policies": {name: s.summary() for name, s in sorted(view.active.items())},
            "policies_not_served": dict(sorted(view.unserved.items())),
            "decision_log": None if self._log is None else {
                "stream": self._log.stream, "head_seq": self._log.head[0]},
        }
        return loaded, detail

    # -- wiring --------------------------------------------------------------------------------------

    def _verify(self, data: bytes, ledger: Any) -> Any:
        return Verifier(ledger, self._verify_config, self.identity, self._clock,
                        plaintext=locked_bytearray).verify(data)

    def _make_evaluator(self, module: bytes | bytearray) -> Evaluator:
        try:
            return Evaluator.from_wasm(module, limits=self._limits, clock=self._clock)
        finally:
            if isinstance(module, bytearray):  # a decrypted module: compiled (or refused), now wiped
                wipe(module)

    def _signer_key(self, did: str) -> Any:
        return self._link.ledger().key(did)

    def _event(self, name: str, **fields: Any) -> None:
        if name == "artifact_loaded" or name == "artifact_uploaded":
            self.metrics.loaded(str(fields.get("policy")))
        elif name in _REJECTION_EVENTS:
            self.metrics.rejected(name.removeprefix("artifact_"))
        warn = name in _REJECTION_EVENTS or name == "artifact_unverifiable"
        level = logging.ERROR if name == "ledger_rolled_back" else logging.WARNING if warn else logging.INFO
        logs.event(name, level, worker=self.worker, **fields)
        if self._log is not None:
            self._log.append_event(name, **fields)

    def _update_gauges(self) -> None:
        self.metrics.set_state(len(self._registry.view.servable), self._link.reachable,
                               self._link.rolled_back is not None)


def _host_name(header: str) -> str:
    """A Host header's name or address without its port ("[::1]:8080" -> "[::1]")."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def _why_not_served(artifact: Mapping[str, Any]) -> str:
    state, reason = artifact["state"], artifact.get("reason")
    said = _NOT_SERVED.get(state, f"it is {state}")
    if not reason:
        return said
    return reason if state in reason else f"{said}: {reason}"  # the stored reason may say it already
