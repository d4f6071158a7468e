"""The local artifact store: the signed `.sop` files exactly as uploaded, and an index.

Nothing in the store is trusted: every file is verified through Axon again when it is loaded. The
store exists so that a restart serves the last known good set even when the ledger cannot be reached;
for that it also keeps, per artifact, the ledger facts its last successful verification relied on
(signer key and level, artifact record), which Axon re-checks the signature against offline.

Encrypted artifacts stay ciphertext here (the bytes as uploaded); they are decrypted in RAM only.

Layout:
    <root>/index.json            {"generation": N, "artifacts": {urn: {...}}, "policies": {name: {...}}}
    <root>/artifacts/<h>.sop     h = SHA-256 of the URN (a safe file name for any URN)
    <root>/.lock                 flock'd around every read-modify-write (several workers share a store)

`generation` grows with every change, so a worker notices changes made by another one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from axon import strictjson
from synapse.service.errors import ServiceError

INDEX_FORMAT = "sopcos-artifact-store-1"
STATES = ("active", "retired", "revoked", "superseded", "rejected")


class StoreError(ServiceError):
    code = "SYNAPSE-SVC-STORE"
    status = 503


@dataclass
class StoredArtifact:
    urn: str
    policy: str
    version: str
    file: str
    sha256: str
    added_at: float
    kid: str
    authority_level: int
    encrypted: bool
    # "active": may be served; "retired" by an administrator; "revoked"/"superseded" on the ledger;
    # "rejected": Axon refused it on a later check (key revoked, expired, ...).
    state: str = "active"
    reason: str | None = None
    ledger: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("file", "ledger")}


@dataclass
class PolicyState:
    # Highest version ever made active: nothing older is served again without an explicit rollback.
    floor: str = "0.0.0"
    pinned: str | None = None  # URN an administrator rolled back to


@dataclass
class Index:
    generation: int = 0
    artifacts: dict[str, StoredArtifact] = field(default_factory=dict)
    policies: dict[str, PolicyState] = field(default_factory=dict)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._files = self.root / "artifacts"
        self._index_path = self.root / "index.json"

    def open(self) -> ArtifactStore:
        try:
            self._files.mkdir(parents=True, exist_ok=True)
            (self.root / ".lock").touch(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the artifact store {self.root}: {exc.strerror}") from exc
        return self

    # reading

    def index(self) -> Index:
        """The index as on disk now (an empty one for a new store)."""
        try:
            raw = self._index_path.read_bytes()
        except FileNotFoundError:
            return Index()
        except OSError as exc:
            raise StoreError(f"cannot read {self._index_path}: {exc.strerror}") from exc
        try:
            doc = strictjson.loads(raw)
            if doc.get("format") != INDEX_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            return Index(
                generation=int(doc["generation"]),
                artifacts={urn: StoredArtifact(**a) for urn, a in doc["artifacts"].items()},
                policies={name: PolicyState(**p) for name, p in doc["policies"].items()},
            )
        except (strictjson.JsonError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{self._index_path} is damaged ({exc}); move it aside and upload the "
                             "artifacts again") from exc

    def generation(self) -> int:
        """Cheap change check: the index file's generation (0 when there is none)."""
        return self.index().generation

    def read(self, entry: StoredArtifact) -> bytes:
        """The stored bytes of an artifact, checked against the hash recorded when it was stored."""
        path = self._files / entry.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read stored artifact {entry.urn} ({path}): {exc.strerror}") from exc
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise StoreError(f"stored artifact {entry.urn} ({path}) was changed on disk")
        return data

    # changing

    @contextmanager
    def update(self) -> Iterator[Index]:
        """Read-modify-write of the index under the store's lock; the generation grows by one."""
        with (self.root / ".lock").open("r+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                index = self.index()
                yield index
                index.generation += 1
                self._write_index(index)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(self, index: Index, entry: StoredArtifact, data: bytes) -> None:
        """Write an artifact's bytes (inside `update()`); the file name and hash go into `entry`."""
        entry.file = hashlib.sha256(entry.urn.encode()).hexdigest() + ".sop"
        entry.sha256 = hashlib.sha256(data).hexdigest()
        _atomic_write(self._files / entry.file, data)
        index.artifacts[entry.urn] = entry

    def _write_index(self, index: Index) -> None:
        doc = {"format": INDEX_FORMAT, "generation": index.generation,
               "artifacts": {urn: asdict(a) for urn, a in sorted(index.artifacts.items())},
               "policies": {name: asdict(p) for name, p in sorted(index.policies.items())}}
        _atomic_write(self._index_path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, rename over `path`, fsync the directory."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
