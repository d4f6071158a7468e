"""The service's view of the ledger: reachable or not, and the facts an artifact's verification used.

`LedgerLink` opens the ledger lazily and again after any failure, so the service survives a ledger
file that is missing, locked or broken, and reports that state (/readyz) instead of stopping.

`RecordingLedger` wraps a live ledger while Axon verifies an artifact and notes every record Axon
reads (signer key, artifact record, policy name, groups). Those facts are stored beside the artifact; when the
ledger cannot be reached at a restart, `SnapshotLedger` answers Axon's questions from them, so the
signature, URN and authority checks still run, against the last known good state of the ledger.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from axon.keys import PublicKey
from axon.ledger import ArtifactRecord, GroupRecord, KeyRecord, Ledger, LedgerError, PolicyRecord
from synapse.service.errors import ServiceError


class LedgerUnreachable(ServiceError):
    code = "SYNAPSE-SVC-LEDGER-UNREACHABLE"
    status = 503


class LedgerLink:
    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()  # the follower thread and request handlers share the connection
        self._ledger: Ledger | None = None
        self.reachable = False
        self.error: str | None = "not checked yet" if path is not None else "no ledger configured"
        self.last_ok: float | None = None
        self.head_seq: int | None = None

    def ledger(self) -> Ledger:
        """The open ledger, or LedgerUnreachable (and the link is marked down)."""
        if self.path is None:
            raise LedgerUnreachable("no ledger is configured")
        with self._lock:
            if self._ledger is not None and not self.path.exists():
                self._drop("the ledger file disappeared")
            if self._ledger is None:
                try:
                    self._ledger = Ledger.open(self.path)
                except (LedgerError, OSError) as exc:
                    self._fail(exc)
            return self._ledger  # type: ignore[return-value]

    def check(self) -> int:
        """Touch the ledger (its head sequence number); raises LedgerUnreachable."""
        with self._lock:
            ledger = self.ledger()
            try:
                head = ledger.head_seq
            except (LedgerError, OSError) as exc:
                self._fail(exc)
            self.mark_ok(head)
            return head

    def mark_ok(self, head: int | None = None) -> None:
        self.reachable, self.error, self.last_ok = True, None, self._clock()
        if head is not None:
            self.head_seq = head

    def failed(self, exc: BaseException) -> None:
        """Someone else's read of the ledger failed: drop the connection, note why."""
        with self._lock:
            self._drop(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            self._drop(self.error)

    def _fail(self, exc: BaseException) -> None:
        self._drop(f"{type(exc).__name__}: {exc}")
        raise LedgerUnreachable(f"the ledger {self.path} cannot be read: {exc}") from None

    def _drop(self, reason: str | None) -> None:
        if self._ledger is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                self._ledger.close()
        self._ledger = None
        self.reachable = False
        self.error = reason


# --- facts ------------------------------------------------------------------------------------------


def _key_to_dict(rec: KeyRecord) -> dict[str, Any]:
    return {**asdict(rec), "public_key": rec.public_key.hex()}


def _key_from_dict(doc: dict[str, Any]) -> KeyRecord:
    return KeyRecord(**{**doc, "public_key": PublicKey.from_hex(doc["public_key"])})


def _group_from_dict(doc: dict[str, Any]) -> GroupRecord:
    return GroupRecord(**{**doc, "members": tuple(doc["members"])})


def _artifact_from_dict(doc: dict[str, Any]) -> ArtifactRecord:
    known = {f.name for f in fields(ArtifactRecord)}
    return ArtifactRecord(**{k: v for k, v in doc.items() if k in known})


class RecordingLedger:
    """Passes reads through to a live ledger and records what was read (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.facts: dict[str, Any] = {"chain_id": ledger.chain_id, "keys": {}, "addresses": {},
                                      "artifacts": {}, "policies": {}, "groups": {}, "group_members": {}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def key(self, did: str) -> KeyRecord | None:
        rec = self._ledger.key(did)
        self.facts["keys"][did] = None if rec is None else _key_to_dict(rec)
        return rec

    def key_by_address(self, address: str) -> KeyRecord | None:
        rec = self._ledger.key_by_address(address)
        self.facts["addresses"][address] = None if rec is None else _key_to_dict(rec)
        return rec

    def artifact(self, urn: str) -> ArtifactRecord | None:
        rec = self._ledger.artifact(urn)
        self.facts["artifacts"][urn] = None if rec is None else asdict(rec)
        return rec

    def policy(self, name: str) -> PolicyRecord | None:
        rec = self._ledger.policy(name)
        self.facts["policies"][name] = None if rec is None else asdict(rec)
        return rec

    def group(self, group_did: str) -> GroupRecord | None:
        rec = self._ledger.group(group_did)
        self.facts["groups"][group_did] = None if rec is None else asdict(rec)
        return rec

    def group_members(self, group_did: str) -> list[KeyRecord]:
        members = self._ledger.group_members(group_did)
        self.facts["group_members"][group_did] = [_key_to_dict(m) for m in members]
        return members


class SnapshotLedger:
    """Answers from recorded facts; a question never asked while online cannot be answered offline."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self._facts = facts

    @property
    def chain_id(self) -> int:
        return int(self._facts.get("chain_id", 0))

    def _get(self, table: str, key: str) -> Any:
        found = self._facts.get(table, {})
        if key not in found:
            raise LedgerUnreachable(f"the ledger cannot be reached and its last known state has no {table} "
                                    f"record for {key}")
        return found[key]

    def key(self, did: str) -> KeyRecord | None:
        doc = self._get("keys", did)
        return None if doc is None else _key_from_dict(doc)

    def key_by_address(self, address: str) -> KeyRecord | None:
        doc = self._get("addresses", address)
        return None if doc is None else _key_from_dict(doc)

    def artifact(self, urn: str) -> ArtifactRecord | None:
        doc = self._get("artifacts", urn)
        return None if doc is None else _artifact_from_dict(doc)

    def policy(self, name: str) -> PolicyRecord | None:
        doc = self._get("policies", name)  # facts stored before policy names were bound have none
        return None if doc is None else PolicyRecord(**doc)

    def group(self, group_did: str) -> GroupRecord | None:
        doc = self._get("groups", group_did)
        return None if doc is None else _group_from_dict(doc)

    def group_members(self, group_did: str) -> list[KeyRecord]:
        return [_key_from_dict(d) for d in self._get("group_members", group_did)]
