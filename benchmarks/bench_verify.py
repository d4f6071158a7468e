"""Artifact verification figures (issue 3 item 8), each beside a baseline measured in the same run.

    python benchmarks/bench_verify.py          full run (under a minute)
    python benchmarks/bench_verify.py --quick  smoke run: same table, fewer samples

The artifact is boiler-guard compiled by scc, padded with a custom section to a 100 KB module
(the blob; the .sop file is base64, ~137 KB), signed, registered on an embedded SQLite ledger.
Rows:
  - verify: Axon's whole Verifier.verify, all 19 checks (size, strict JSON, schema, header, signer,
    signature, hashes, authority, ledger registration/policy name/revocation/supersession, time,
    rollback, module interface). Target: under 1 ms.
  - verify without accelerators: the same, with binascii and jsonschema only (what runs when the
    optional pybase64 and jsonschema-rs are not installed).
  - verify core: what the issue names, signature + hash + ledger look-ups, on an envelope already
    parsed: the signer's key and the artifact's record from the ledger, the RFC 8785 signing bytes,
    SHA-256 and ECDSA verify, SHA-256 of the blob.
  - decrypt+load: an artifact encrypted for the node: verify (with decryption in memory) and build a
    synapse Evaluator from the plaintext (wasmtime compile + instantiate).
  - baselines: raw SHA-256 of 100 KB + one secp256k1 verify (coincurve, nothing else); and a bare
    Evaluator.from_wasm of the same module (what decrypt+load adds verification to).
  - per-check breakdown of the plain verify, so a regression shows where it is.
Each figure is the median of many short rounds (the best round is shown too): on a shared machine a
short round is often not interrupted, so the median is the machine's speed, not its load; the load
average is printed with the table. The header names the optional accelerators in use (axon.envelope).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import coincurve  # noqa: E402
from _table import per_op_us  # noqa: E402

from axon import abi, verify  # noqa: E402
from axon import envelope as sop_envelope  # noqa: E402
from axon.artifact_crypto import resolve_recipients  # noqa: E402
from axon.envelope import PackageSpec, build, verify_signature  # noqa: E402
from axon.keys import Identity, SigningKey  # noqa: E402
from axon.ledger import Ledger, ops  # noqa: E402
from scc.compiler import compile_policy  # noqa: E402
from synapse.artifacts import load_verified  # noqa: E402
from synapse.evaluate import Evaluator  # noqa: E402

MODULE_BYTES = 100_000
TARGET_VERIFY_US = 1000.0
GROUP = "did:sopcos:group:bench"


def padded_module(size: int) -> bytes:
    """boiler-guard's module with a `padding` custom section before `sopcos.meta`, `size` bytes long."""
    wasm = compile_policy((ROOT / "policies" / "boiler-guard.json").read_bytes()).wasm
    meta_section = abi.custom_section(abi.META_SECTION, abi.read_custom_sections(wasm, abi.META_SECTION)[0])
    code = wasm[: len(wasm) - len(meta_section)]
    assert code + meta_section == wasm
    fill = size - len(wasm) - 16
    padding = bytes(range(256)) * (fill // 256) + b"\x00" * (fill % 256)
    return code + abi.custom_section("padding", padding) + meta_section  # within a few bytes of `size`


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (rough figures)")
    args = parser.parse_args(argv)
    n, rounds, load_n, samples = (20, 5, 2, 30) if args.quick else (20, 51, 4, 200)

    module = padded_module(MODULE_BYTES)
    with tempfile.TemporaryDirectory() as tmp:
        now = int(time.time())
        root = Identity(SigningKey.generate(), "did:sopcos:root#key-1")
        author = Identity(SigningKey.generate(), "did:sopcos:author#key-1")
        node = Identity(SigningKey.generate(), "did:sopcos:node#key-1")
        ledger = Ledger.init(Path(tmp) / "ledger.db", root, now=now)
        ledger.sign_and_submit(root, ops.register_key(author.did, author.key.public_key, "LVL_3"), now)
        ledger.sign_and_submit(root, ops.register_key(node.did, node.key.public_key, "LVL_1"), now)
        ledger.sign_and_submit(root, ops.define_group(GROUP, [node.did]), now)
        plain = build(module, author, PackageSpec("LVL_3", now))
        recipients = resolve_recipients([GROUP], ledger)
        sealed = build(module, author, PackageSpec("LVL_3", now, encrypt_for=recipients))
        for envelope in (plain, sealed):
            op = ops.register_artifact(envelope.urn, "boiler-guard", "1.2.0", "LVL_3")
            ledger.sign_and_submit(author, op, now)
        plain_bytes, sealed_bytes = plain.to_bytes(), sealed.to_bytes()
        verifier = verify.Verifier(ledger, node_identity=node)
        assert verifier.verify(plain_bytes).module == module
        assert verifier.verify(sealed_bytes).module == module

        def core() -> None:
            signer = ledger.key(plain.kid)
            assert verify_signature(plain, signer.public_key)
            assert "sha256:" + hashlib.sha256(plain.blob).hexdigest() == plain.integrity
            record = ledger.artifact(plain.urn)
            assert not record.revoked and record.superseded_by is None

        digest = hashlib.sha256(b"x").digest()
        raw_key = coincurve.PrivateKey()
        raw_sig, raw_pub = raw_key.sign(digest, hasher=None), raw_key.public_key

        def baseline() -> None:
            hashlib.sha256(module).digest()
            raw_pub.verify(raw_sig, digest, hasher=None)

        def verify_plain() -> object:
            return verifier.verify(plain_bytes)

        def verify_sealed() -> object:
            return verifier.verify(sealed_bytes)

        def decrypt_and_load() -> object:
            return load_verified(sealed_bytes, verifier)

        def load_unverified() -> object:
            return Evaluator.from_wasm(module)

        measured = [
            ("verify  Verifier.verify, all 19 checks", verify_plain, n, TARGET_VERIFY_US),
            ("verify  core: signature + hash + ledger look-ups", core, n, TARGET_VERIFY_US),
            ("baseline: sha256(100 KB) + one secp256k1 verify", baseline, n, None),
            ("verify  encrypted artifact (decrypt in RAM)", verify_sealed, n, None),
            ("decrypt+load  verify + Evaluator from RAM", decrypt_and_load, load_n, None),
            ("baseline: Evaluator.from_wasm, no verification", load_unverified, load_n, None),
        ]
        rows = [(name, *per_op_us(fn, count, rounds), target) for name, fn, count, target in measured]
        with reference_paths():
            rows.insert(1, ("verify  the same without accelerators", *per_op_us(verify_plain, n, rounds),
                            TARGET_VERIFY_US))
        breakdown = check_breakdown(verifier, plain, samples)
        ledger.close()

    print(f"Artifact verification: module {len(module):,} bytes, .sop file {len(plain_bytes):,} bytes "
          f"(encrypted {len(sealed_bytes):,}); median of {rounds} rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; accelerators: "
          f"{', '.join(sop_envelope.ACCELERATORS) or 'none'}\n")
    print(f"{'operation':52} {'us/op':>9} {'best':>9} {'ops/s':>8}  target")
    for name, median, best, target in rows:
        verdict = "" if target is None else f"{'PASS' if median <= target else 'MISS'} (< {target:.0f} us)"
        print(f"{name:52} {median:9.1f} {best:9.1f} {1e6 / median:8.0f}  {verdict}")
    total = sum(us for _, us in breakdown)
    print(f"\nwhere the plain verify's time goes (median us per check, {total:.0f} in all)")
    print("  " + ", ".join(f"{name} {us:.0f}" for name, us in breakdown if us >= 0.5))
    return 0


@contextmanager
def reference_paths() -> Iterator[None]:
    """Envelope parsing with binascii and jsonschema only, as without pybase64 and jsonschema-rs."""
    saved = sop_envelope._decode_base64, sop_envelope._known_valid
    sop_envelope._decode_base64 = sop_envelope.BASE64_DECODERS["binascii"]
    sop_envelope._known_valid = lambda doc: False
    try:
        yield
    finally:
        sop_envelope._decode_base64, sop_envelope._known_valid = saved


class TimedProgress(verify.CheckProgress):
    """Verify's own progress, also noting how long each check took."""

    def __init__(self, times: dict[str, list[int]]) -> None:
        super().__init__()
        self.times = times

    def run(self, check: Callable, *args: object) -> object:
        start = time.perf_counter_ns()
        result = super().run(check, *args)
        self.times.setdefault(self.passed[-1], []).append(time.perf_counter_ns() - start)
        return result


def check_breakdown(verifier: verify.Verifier, envelope: sop_envelope.ArtifactEnvelope,
                    samples: int) -> list[tuple[str, float]]:
    """Median time of each check over `samples` whole verifications, and of the ledger reads the
    verifier makes between them (no check reads the ledger itself)."""
    data, ledger = envelope.to_bytes(), verifier.ledger
    times: dict[str, list[int]] = {"ledger reads": []}
    for _ in range(samples):
        verifier.verify(data, progress=TimedProgress(times))
        start = time.perf_counter_ns()
        ledger.key(envelope.kid)
        ledger.artifact(envelope.urn)
        ledger.policy(envelope.policy)
        times["ledger reads"].append(time.perf_counter_ns() - start)
    return [(name, statistics.median(samples_ns) / 1000) for name, samples_ns in times.items()]


if __name__ == "__main__":
    raise SystemExit(main())
