"""Rebuild an artifact's module from its source and compare (SIP-001 §7: same source + same compiler
version = same bytes), for `axon verify --rebuild POLICY.json`.

Axon may not import the compiler (dependencies flow scc -> axon only), so the rebuild runs the
compiler a user would run, `python -m scc compile`, in a child process. Its output goes to a private
directory on a RAM-backed file system where there is one (/dev/shm), so that rebuilding an
encrypted artifact's module leaves no plaintext module on disk either; the directory is removed at
once. `compare` is pure: it says which of compiler, source and module bytes differ.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from axon.abi import ModuleMetaError, read_meta
from axon.errors import AxonError
from axon.verify import VerifiedArtifact

RAM_DIR = Path("/dev/shm")
TIMEOUT_SECONDS = 120


class RebuildFailed(AxonError):
    """The compiler could not rebuild a module from the given source."""

    code = "AXON-REBUILD-FAILED"


@dataclass(frozen=True)
class RebuildComparison:
    matches: bool
    reason: str  # one sentence a person can act on
    artifact_compiler: str
    local_compiler: str
    artifact_source_hash: str
    local_source_hash: str
    artifact_module: str  # "sha256:<hex>" of the plaintext module
    local_module: str

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compare(artifact: VerifiedArtifact, rebuilt: bytes) -> RebuildComparison:
    """Does `rebuilt` (the module compiled here from the source) equal the artifact's module?"""
    try:
        local = read_meta(rebuilt)
    except ModuleMetaError as exc:
        raise RebuildFailed(f"the rebuilt module has no readable sopcos.meta: {exc}") from None
    fields = dict(artifact_compiler=artifact.meta.compiler, local_compiler=local.compiler,
                  artifact_source_hash=artifact.meta.source_hash, local_source_hash=local.source_hash,
                  artifact_module=_digest(artifact.module), local_module=_digest(rebuilt))
    if local.compiler != artifact.meta.compiler:
        reason = (f"cannot confirm: the artifact was built by {artifact.meta.compiler}, this machine's "
                  f"compiler is {local.compiler}; rebuild with {artifact.meta.compiler} to compare")
        return RebuildComparison(False, reason, **fields)
    if local.source_hash != artifact.meta.source_hash:
        reason = "no: this source is not the one the artifact was built from (its source hash differs)"
        return RebuildComparison(False, reason, **fields)
    if rebuilt != artifact.module:
        reason = (f"no: same source and same compiler ({local.compiler}), but the module bytes differ: "
                  "the artifact was not produced by this compiler from this source")
        return RebuildComparison(False, reason, **fields)
    reason = f"yes: {local.compiler} rebuilds the artifact's module byte for byte from this source"
    return RebuildComparison(True, reason, **fields)


def rebuild(policy: Path, python: str = sys.executable) -> bytes:
    """Compile `policy` with `python -m scc compile` in a child process; return the module bytes."""
    base = RAM_DIR if RAM_DIR.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="sopcos-rebuild-", dir=base) as workdir:
        out = Path(workdir) / "rebuilt.wasm"
        try:
            done = subprocess.run([python, "-m", "scc", "compile", str(policy), "-o", str(out)],
                                  capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RebuildFailed(f"cannot run the compiler: {exc}") from None
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RebuildFailed(f"the compiler could not rebuild {policy}: "
                                + ("; ".join(detail[-5:]) or f"exit status {done.returncode}"))
        return out.read_bytes()
