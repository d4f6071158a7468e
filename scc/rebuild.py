"""Does an artifact's module come from this source? (SIP-001 §7: the same source and the same
compiler version give the same bytes.) For `scc rebuild`.

The compiler runs in this process and the rebuilt module stays in memory, so rebuilding an
encrypted artifact's module writes no plaintext module anywhere. `compare` is pure: it says which of
compiler, source and module bytes differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from axon.verify import VerifiedArtifact
from scc.compiler import CompileResult


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
        return asdict(self)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compare(artifact: VerifiedArtifact, rebuilt: CompileResult) -> RebuildComparison:
    """Does `rebuilt` (the source compiled here) give the artifact's module byte for byte?"""
    compiler, source_hash = rebuilt.meta["compiler"], rebuilt.meta["source_hash"]
    fields = dict(artifact_compiler=artifact.meta.compiler, local_compiler=compiler,
                  artifact_source_hash=artifact.meta.source_hash, local_source_hash=source_hash,
                  artifact_module=_digest(artifact.module), local_module=_digest(rebuilt.wasm))
    if compiler != artifact.meta.compiler:
        reason = (f"cannot confirm: the artifact was built by {artifact.meta.compiler}, this machine's "
                  f"compiler is {compiler}; rebuild with {artifact.meta.compiler} to compare")
        return RebuildComparison(False, reason, **fields)
    if source_hash != artifact.meta.source_hash:
        reason = "no: this source is not the one the artifact was built from (its source hash differs)"
        return RebuildComparison(False, reason, **fields)
    if rebuilt.wasm != artifact.module:
        reason = (f"no: same source and same compiler ({compiler}), but the module bytes differ: "
                  "the artifact was not produced by this compiler from this source")
        return RebuildComparison(False, reason, **fields)
    reason = f"yes: {compiler} rebuilds the artifact's module byte for byte from this source"
    return RebuildComparison(True, reason, **fields)
