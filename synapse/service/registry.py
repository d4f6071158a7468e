"""Which artifact serves each policy, and keeping that true as the store and the ledger change.

Rules (docs/service.md says the same for operators):
- Only artifacts Axon verified are served; every stored artifact is verified again when loaded.
- Requests name a policy, or an artifact URN; a URN is served only while it is its policy's active
  artifact (so a client cannot pick an older version by itself).
- The active artifact of a policy is its newest servable version (semantic version order; among equal
  versions the latest upload), unless an administrator pinned one (`rollback`).
- A policy never falls back to an older version by itself: the highest version ever made active is
  the policy's floor, and when the artifact at the floor is revoked, superseded or retired the policy
  is not served (requests get a clear error) until a newer version is uploaded or an administrator
  rolls back explicitly. An automatic fallback would be a rollback nobody authorised.
- Uploading a version above the floor raises the floor and clears any pin.
- The follower re-verifies every served artifact whenever the ledger's head moves (revocation,
  supersession, signer key revocation all show there) and stops serving those Axon now refuses; it
  also reloads when another worker changed the store. When the ledger cannot be read, or does not
  hold the head this node verified (ledger_link.py), what was verified last keeps being served, the
  registry reports itself degraded, and nothing new is uploaded or loaded.

Concurrency: the hot path (`resolve`) reads one immutable `View` without locking; changes build a new
View and swap it in under the registry's lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from axon.errors import AxonError
from synapse.evaluate import Evaluator
from synapse.service.errors import (
    ArtifactRejected,
    ArtifactUnknown,
    Conflict,
    PolicyNotServed,
    PolicyUnknown,
    RequestInvalid,
)
from synapse.service.ledger_link import LedgerLink, LedgerUnreachable, RecordingLedger, SnapshotLedger
from synapse.service.store import ArtifactStore, Index, PolicyState, StoredArtifact, StoreError

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class VerifiedLike(Protocol):
    urn: str
    policy: str
    version: str
    kid: str
    authority_level: int
    module: bytes
    encrypted: bool
    expires_at: float | int | None


VerifyFn = Callable[[bytes, Any], VerifiedLike]
EventFn = Callable[..., None]


def version_key(version: str) -> tuple[int, int, int]:
    m = _SEMVER.match(version)
    if m is None:
        raise RequestInvalid(f"version {version!r} is not MAJOR.MINOR.PATCH")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True)
class Served:
    """An artifact that may be evaluated: its identity and its loaded evaluator."""

    urn: str
    policy: str
    version: str
    kid: str
    authority_level: int
    encrypted: bool
    expires_at: float | None
    added_at: float
    evaluator: Evaluator = field(compare=False, repr=False)
    offline: bool = False  # verified against the stored ledger facts, not the live ledger

    def summary(self) -> dict[str, Any]:
        return {"urn": self.urn, "policy": self.policy, "version": self.version}


@dataclass(frozen=True)
class View:
    active: dict[str, Served] = field(default_factory=dict)  # policy -> the artifact serving it
    servable: dict[str, Served] = field(default_factory=dict)  # urn -> every servable artifact
    unserved: dict[str, str] = field(default_factory=dict)  # policy -> why nothing serves it
    known: dict[str, str] = field(default_factory=dict)  # urn -> why it is not servable
    offline: bool = False  # some artifact was verified against stored ledger facts only


class Registry:
    def __init__(self, store: ArtifactStore, link: LedgerLink, verify: VerifyFn,
                 make_evaluator: Callable[[bytes], Evaluator], *, events: EventFn | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.link = link
        self._verify = verify
        self._make_evaluator = make_evaluator
        self._events = events or (lambda *a, **k: None)
        self._clock = clock
        self._lock = threading.RLock()
        self._loaded: dict[str, Served] = {}
        self._generation = -1
        self._ledger_head: int | None = None
        self.view = View()
        self.loaded_once = False

    # -- the hot path --------------------------------------------------------------------------------

    def resolve(self, name: str) -> Served:
        """The artifact serving `name` (a policy name or an artifact URN), or a precise error."""
        view = self.view
        if name.startswith("urn:"):
            served = view.servable.get(name)
            if served is not None:
                active = view.active.get(served.policy)
                if active is served:
                    return served
                # Asking for another artifact by URN would be a rollback (or a preview) nobody authorised.
                now = f"{active.urn} ({active.version})" if active else "none"
                raise PolicyNotServed(f"artifact {name} ({served.policy} {served.version}) is not the active "
                                      f"artifact of its policy (active: {now}); only an administrator's "
                                      "rollback makes it serve")
            if name in view.known:
                raise PolicyNotServed(f"artifact {name} is not served: {view.known[name]}")
            raise PolicyUnknown(f"no artifact {name} on this service")
        served = view.active.get(name)
        if served is not None:
            return served
        if name in view.unserved:
            raise PolicyNotServed(f"policy {name!r} is not served: {view.unserved[name]}")
        raise PolicyUnknown(f"no policy {name!r} on this service (GET /v1/policies lists them)")

    @property
    def offline(self) -> bool:
        return self.view.offline

    # -- loading and following -----------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Bring the loaded set in line with the store, and (when reachable) the ledger."""
        with self._lock:
            try:
                head = self.link.check()
            except LedgerUnreachable:
                head = None
            index = self.store.index()
            ledger_moved = head is not None and (head != self._ledger_head or self.offline)
            if not force and index.generation == self._generation and not ledger_moved:
                self._expire(index)
                return
            self._sync(index, recheck=ledger_moved or force)
            if head is not None:
                self._ledger_head = head

    def _sync(self, index: Index, recheck: bool) -> None:
        changes: list[tuple[str, str, str]] = []  # (urn, new state, reason)
        facts_updates: dict[str, dict[str, Any]] = {}
        for urn in list(self._loaded):
            entry = index.artifacts.get(urn)
            if entry is None or entry.state != "active":
                self._unload(urn, entry.state if entry else "removed")
        for urn, entry in index.artifacts.items():
            if entry.state != "active" or (urn in self._loaded and not recheck):
                continue
            try:
                served, facts = self._load(entry, keep=self._loaded.get(urn))
            except LedgerUnreachable as exc:
                self._unload(urn, "unverifiable")
                self._events("artifact_unverifiable", urn=urn, policy=entry.policy, reason=str(exc))
                continue
            except (AxonError, ArtifactRejected, StoreError) as exc:  # StoreError: the file was altered
                state = self._classify(urn, exc)
                changes.append((urn, state, f"{exc} [{_code(exc)}]"))
                self._unload(urn, state)
                continue
            if urn not in self._loaded:
                self._events("artifact_loaded", urn=urn, policy=entry.policy, version=entry.version,
                             offline=served.offline)
            self._loaded[urn] = served
            if facts is not None and facts != entry.ledger:
                facts_updates[urn] = facts
        if changes or facts_updates:
            with self.store.update() as fresh:
                for urn, state, reason in changes:
                    if urn in fresh.artifacts and fresh.artifacts[urn].state == "active":
                        fresh.artifacts[urn].state, fresh.artifacts[urn].reason = state, reason
                        self._events(f"artifact_{state}", urn=urn, policy=fresh.artifacts[urn].policy,
                                     reason=reason)
                for urn, facts in facts_updates.items():
                    if urn in fresh.artifacts:
                        fresh.artifacts[urn].ledger = facts
                index = fresh
        self._generation = index.generation
        self._rebuild(index)
        self.loaded_once = True

    def _load(self, entry: StoredArtifact, keep: Served | None) -> tuple[Served, dict[str, Any] | None]:
        """Verify a stored artifact (live ledger, else its stored facts) and load it."""
        data = self.store.read(entry)
        verified, facts, offline = self._verify_any(data, entry.ledger)
        if verified.urn != entry.urn:
            raise ArtifactRejected(f"stored file for {entry.urn} verifies as {verified.urn}")
        if keep is not None:  # already running: the same URN is the same module, keep its evaluator
            return _served(verified, entry.added_at, keep.evaluator, offline), facts
        return _served(verified, entry.added_at, self._evaluator(verified.module), offline), facts

    def _verify_any(self, data: bytes,
                    stored_facts: dict[str, Any]) -> tuple[VerifiedLike, dict | None, bool]:
        try:
            ledger = self.link.ledger()
        except LedgerUnreachable:
            if not stored_facts:
                raise
            return self._verify(data, SnapshotLedger(stored_facts)), None, True
        recording = RecordingLedger(ledger)
        try:
            verified = self._verify(data, recording)
        except (LedgerUnreachable, OSError) as exc:
            self.link.failed(exc)
            raise LedgerUnreachable(f"the ledger could not be read: {exc}") from None
        except AxonError as exc:
            if _is_storage_error(exc):
                self.link.failed(exc)
                raise LedgerUnreachable(f"the ledger could not be read: {exc}") from None
            raise
        return verified, recording.facts, False

    def _evaluator(self, module: bytes) -> Evaluator:
        try:
            return self._make_evaluator(module)
        except AxonError as exc:
            raise ArtifactRejected(f"the runtime refused the module: {exc}", code=_code(exc)) from None
        except Exception as exc:  # synapse.errors.ModuleError and wasmtime's own: the module is unusable
            raise ArtifactRejected(f"the runtime refused the module: {exc}",
                                   code=getattr(exc, "code", "SYNAPSE-MODULE")) from None

    def _classify(self, urn: str, exc: Exception) -> str:
        """Why Axon refused: the ledger's word for it when the artifact's record says so."""
        try:
            record = self.link.ledger().artifact(urn)
        except Exception:  # the refusal stands; the ledger just cannot tell us more
            record = None
        if record is not None and record.revoked:
            return "revoked"
        if record is not None and record.superseded_by:
            return "superseded"
        return "rejected"

    def _expire(self, index: Index) -> None:
        now = self._clock()
        expired = [s for s in self._loaded.values() if s.expires_at is not None and now >= s.expires_at]
        if not expired:
            return
        with self.store.update() as fresh:
            for s in expired:
                if s.urn in fresh.artifacts:
                    fresh.artifacts[s.urn].state = "rejected"
                    fresh.artifacts[s.urn].reason = f"{s.urn} expired at {s.expires_at:.0f} (Unix time)"
                self._unload(s.urn, "expired")
                self._events("artifact_expired", urn=s.urn, policy=s.policy)
        self._generation = fresh.generation
        self._rebuild(fresh)

    def _unload(self, urn: str, why: str) -> None:
        served = self._loaded.pop(urn, None)
        if served is not None:
            self._events("artifact_unloaded", urn=urn, policy=served.policy, reason=why)

    def _rebuild(self, index: Index) -> None:
        servable = dict(self._loaded)
        known = {urn: _why(e) for urn, e in index.artifacts.items() if urn not in servable}
        active: dict[str, Served] = {}
        unserved: dict[str, str] = {}
        for policy in sorted({e.policy for e in index.artifacts.values()}):
            chosen, reason = self._choose(policy, index, servable)
            if chosen is not None:
                active[policy] = chosen
            else:
                unserved[policy] = reason
        self.view = View(active, servable, unserved, known, any(s.offline for s in servable.values()))

    def _choose(self, policy: str, index: Index, servable: dict[str, Served]) -> tuple[Served | None, str]:
        state = index.policies.get(policy, PolicyState())
        if state.pinned is not None:
            pinned = servable.get(state.pinned)
            if pinned is not None:
                return pinned, ""
            entry = index.artifacts.get(state.pinned)
            why = _why(entry) if entry else "it is no longer in the store"
            return None, f"it is pinned to {state.pinned}: {why}. Roll back to another artifact"
        candidates = [s for s in servable.values() if s.policy == policy]
        floor = version_key(state.floor)
        fit = [s for s in candidates if version_key(s.version) >= floor]
        if fit:
            return max(fit, key=lambda s: (version_key(s.version), s.added_at)), ""
        at_floor = [e for e in index.artifacts.values() if e.policy == policy and e.version == state.floor]
        what = "; ".join(_why(e) for e in at_floor) or "it is not in the store"
        return None, (f"its newest version {state.floor} cannot be served: {what}. Upload a newer "
                      f"version or roll back explicitly (POST /v1/policies/{policy}/rollback)")

    # -- administration ------------------------------------------------------------------------------

    def upload(self, data: bytes) -> tuple[StoredArtifact, bool]:
        """Verify and store an artifact; returns (entry, created). ArtifactRejected carries Axon's code."""
        with self._lock:
            try:
                verified, facts, offline = self._verify_any(data, {})
            except LedgerUnreachable as exc:
                raise ArtifactRejected(f"cannot verify the artifact: {exc}", code=exc.code, status=409) \
                    from None
            except AxonError as exc:
                raise ArtifactRejected(str(exc), code=_code(exc)) from None
            version_key(verified.version)
            existing = self.store.index().artifacts.get(verified.urn)
            if existing is not None and existing.state == "active":
                return existing, False
            evaluator = self._evaluator(verified.module)
            with self.store.update() as index:
                entry = StoredArtifact(urn=verified.urn, policy=verified.policy, version=verified.version,
                                       file="", sha256="", added_at=self._clock(), kid=verified.kid,
                                       authority_level=int(verified.authority_level),
                                       encrypted=bool(verified.encrypted), ledger=facts or {})
                self.store.put(index, entry, data)
                policy = index.policies.setdefault(entry.policy, PolicyState())
                if version_key(entry.version) > version_key(policy.floor):
                    policy.floor, policy.pinned = entry.version, None
            self._loaded[entry.urn] = _served(verified, entry.added_at, evaluator, offline)
            self._generation = index.generation
            self._rebuild(index)
            self._events("artifact_uploaded", urn=entry.urn, policy=entry.policy, version=entry.version)
            return entry, True

    def retire(self, urn: str) -> StoredArtifact:
        with self._lock, self.store.update() as index:
            entry = self._entry(index, urn)
            if entry.state != "active":
                raise Conflict(f"artifact {urn} is already {entry.state}")
            entry.state, entry.reason = "retired", f"{urn} was retired by an administrator"
            self._unload(urn, "retired")
            self._events("artifact_retired", urn=urn, policy=entry.policy)
        self._generation = index.generation
        self._rebuild(index)
        return entry

    def reactivate(self, urn: str) -> StoredArtifact:
        """Serve a retired artifact again (SIP-017 CMD load); revoked or superseded ones stay refused.
        Like an upload it needs the live ledger: a retired artifact's revocation is never recorded in
        the store, so its stored facts cannot tell (raises LedgerUnreachable / LedgerRolledBack)."""
        with self._lock:
            self.link.ledger()
            with self.store.update() as index:
                entry = self._entry(index, urn)
                if entry.state not in ("active", "retired"):
                    raise Conflict(f"artifact {urn} cannot be loaded: {_why(entry)}")
                entry.state, entry.reason = "active", None
            self._sync(index, recheck=False)
            if urn not in self._loaded:
                raise Conflict(f"artifact {urn} did not verify: {_why(self.store.index().artifacts[urn])}")
            self._events("artifact_reactivated", urn=urn, policy=entry.policy)
            return entry

    def rollback(self, policy: str, urn: str) -> Served:
        """Pin `policy` to the servable artifact `urn` (an explicit, authorised rollback)."""
        with self._lock:
            served = self.view.servable.get(urn)
            with self.store.update() as index:
                entry = self._entry(index, urn)
                if entry.policy != policy:
                    raise Conflict(f"artifact {urn} belongs to policy {entry.policy!r}, not {policy!r}")
                if served is None:
                    raise Conflict(f"artifact {urn} cannot be served: {_why(entry)}")
                index.policies.setdefault(policy, PolicyState()).pinned = urn
                self._events("policy_pinned", policy=policy, urn=urn, version=entry.version)
            self._generation = index.generation
            self._rebuild(index)
            return served

    def unpin(self, policy: str) -> None:
        with self._lock:
            with self.store.update() as index:
                state = index.policies.get(policy)
                if state is None:
                    raise PolicyUnknown(f"no policy {policy!r} on this service")
                if state.pinned is None:
                    raise Conflict(f"policy {policy!r} is not pinned")
                state.pinned = None
                self._events("policy_unpinned", policy=policy)
            self._generation = index.generation
            self._rebuild(index)

    def entry(self, urn: str) -> StoredArtifact:
        return self._entry(self.store.index(), urn)

    @staticmethod
    def _entry(index: Index, urn: str) -> StoredArtifact:
        entry = index.artifacts.get(urn)
        if entry is None:
            raise ArtifactUnknown(f"no artifact {urn} in the store")
        return entry

    # -- reporting -----------------------------------------------------------------------------------

    def describe(self, entry: StoredArtifact) -> dict[str, Any]:
        view = self.view
        served = view.servable.get(entry.urn)
        active = view.active.get(entry.policy)
        return {**entry.public(), "served": served is not None,
                "active": active is not None and active.urn == entry.urn,
                "verified_offline": bool(served and served.offline)}

    def policies(self) -> list[dict[str, Any]]:
        index, view = self.store.index(), self.view
        out = []
        for name in sorted({e.policy for e in index.artifacts.values()}):
            state = index.policies.get(name, PolicyState())
            active = view.active.get(name)
            out.append({"policy": name, "active": None if active is None else active.summary(),
                        "pinned": state.pinned, "floor": state.floor,
                        "reason": view.unserved.get(name),
                        "versions": sorted((e.version for e in index.artifacts.values() if e.policy == name),
                                           key=version_key)})
        return out


def _served(verified: VerifiedLike, added_at: float, evaluator: Evaluator, offline: bool) -> Served:
    expires = verified.expires_at
    return Served(urn=verified.urn, policy=verified.policy, version=verified.version, kid=verified.kid,
                  authority_level=int(verified.authority_level), encrypted=bool(verified.encrypted),
                  expires_at=None if expires is None else float(expires), added_at=added_at,
                  evaluator=evaluator, offline=offline)


def _why(entry: StoredArtifact) -> str:
    if entry.state == "active":
        return "could not be verified or loaded"
    return entry.reason or f"is {entry.state}"


def _code(exc: Exception) -> str:
    return str(getattr(exc, "code", type(exc).__name__))


def _is_storage_error(exc: Exception) -> bool:
    """Axon could not read the ledger (it fails closed with AXON-VERIFY-LEDGER): not a verdict on the
    artifact, so the last known good stays served."""
    return _code(exc) in ("AXON-VERIFY-LEDGER", "AXON-LEDGER-STORAGE")
