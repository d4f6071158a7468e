"""The policy an analysis is about, and the module it must be sound for.

An analysis reads the checked syntax tree; its witnesses are replayed through the module compiled
from the same source. For a `.sop` artifact, which carries no source, the source must be given and
must rebuild the artifact's module byte for byte (`scc rebuild`'s check): then the tree analysed
is the module's.
"""

from __future__ import annotations

from dataclasses import dataclass

from axon.abi import ModuleMetaError, read_meta
from axon.envelope import ArtifactEnvelope
from axon.verify import VerifyError, parse_envelope
from scc.ast import Policy
from scc.compiler import CheckResult, check_policy, compile_policy
from scc.errors import SccError
from scc.reader import Document


class SourceMismatch(SccError):
    """A `.sop` artifact and the source given for it do not belong together (or it is unreadable)."""

    code = "SCC-ANALYSIS-SOURCE"


@dataclass(frozen=True)
class AnalysedPolicy:
    name: str  # what to call it in reports (the file name)
    policy: Policy
    document: Document
    wasm: bytes

    def position(self, pointer: str) -> tuple[int, int]:
        return self.document.position(pointer)


def load(name: str, source: bytes) -> AnalysedPolicy:
    """Compile `source`; raises the compiler's PolicyError when it has errors."""
    result = compile_policy(source)
    checked: CheckResult = check_policy(source)
    if checked.policy is None or checked.document is None:  # compile_policy raised already
        raise SourceMismatch(f"{name}: the checker returned no policy")
    return AnalysedPolicy(name, checked.policy, checked.document, result.wasm)


def load_artifact(name: str, artifact: bytes, source_name: str, source: bytes) -> AnalysedPolicy:
    """The source of a plain (not encrypted) `.sop`, proved to rebuild its module byte for byte."""
    try:
        envelope: ArtifactEnvelope = parse_envelope(artifact)
    except VerifyError as exc:
        raise SourceMismatch(f"{name}: {exc} [{exc.code}]") from None
    if envelope.encrypted:
        raise SourceMismatch(f"{name}: the module is encrypted; analyse its source instead")
    try:
        meta = read_meta(envelope.blob)
    except ModuleMetaError as exc:
        raise SourceMismatch(f"{name}: {exc}") from None
    loaded = load(source_name, source)
    if loaded.wasm != envelope.blob:
        raise SourceMismatch(
            f"{name}: {source_name} does not rebuild this artifact's module byte for byte (source "
            f"{meta.source_hash}, compiler {meta.compiler}); analyse the source it was built from")
    return AnalysedPolicy(name, loaded.policy, loaded.document, envelope.blob)
