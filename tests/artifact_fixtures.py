"""Shared set-up for the artifact tests: a ledger with known keys, and policy modules to package.

`World` is a fresh ledger in a temporary directory: a root (LVL_5), an author (LVL_3), a junior
author (LVL_2), two nodes in the group `did:sopcos:group:plant` and one outsider node. Keys are
derived from fixed labels, so failures reproduce.
"""

from __future__ import annotations

import copy
import hashlib
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import rfc8785
import wasmtime

from axon import abi
from axon import envelope as env_mod
from axon.artifact_crypto import Recipients, resolve_recipients
from axon.envelope import ArtifactEnvelope, PackageSpec
from axon.keys import Identity, SigningKey
from axon.ledger import Ledger, ops
from scc.compiler import compile_policy

NOW = 1_760_000_000
POLICIES = Path(__file__).resolve().parents[1] / "policies"
GROUP = "did:sopcos:group:plant"


def identity(label: str, name: str | None = None) -> Identity:
    return Identity(SigningKey(hashlib.sha256(label.encode()).digest()), f"did:sopcos:{name or label}#key-1")


@dataclass
class World:
    ledger: Ledger
    root: Identity
    author: Identity
    junior: Identity
    node: Identity
    node2: Identity
    outsider: Identity
    now: int = NOW

    def package(self, module: bytes, *, signer: Identity | None = None, level: str = "LVL_3",
                encrypt_for: list[str] | None = None, expires_at: int | None = None,
                created_at: int | None = None, storage_hint: str = "file:///var/lib/sopcos/artifacts/",
                register: bool = True) -> ArtifactEnvelope:
        signer = signer or self.author
        recipients: Recipients | None = resolve_recipients(encrypt_for, self.ledger) if encrypt_for else None
        spec = PackageSpec(level, self.now if created_at is None else created_at, expires_at, storage_hint,
                           recipients)
        envelope = env_mod.build(module, signer, spec)
        if register:
            self.register(envelope, by=signer)
        return envelope

    def register(self, envelope: ArtifactEnvelope, by: Identity | None = None) -> None:
        op = ops.register_artifact(envelope.urn, envelope.policy, envelope.version,
                                   envelope.meta["authority_level"])
        self.ledger.sign_and_submit(by or self.author, op, self.now)


def make_world(tmp_path: Path) -> World:
    root, author, junior = identity("root"), identity("author"), identity("junior")
    node, node2, outsider = identity("node-1"), identity("node-2"), identity("outsider")
    ledger = Ledger.init(tmp_path / "ledger.db", root, now=NOW)
    for who, level in ((author, "LVL_3"), (junior, "LVL_2"), (node, "LVL_1"), (node2, "LVL_1"),
                       (outsider, "LVL_1")):
        ledger.sign_and_submit(root, ops.register_key(who.did, who.key.public_key, level), NOW)
    ledger.sign_and_submit(root, ops.define_group(GROUP, [node.did, node2.did]), NOW)
    return World(ledger, root, author, junior, node, node2, outsider)


# -- modules -----------------------------------------------------------------------------------------

GOOD_WAT = """
  (import "sopcos" "get_telemetry" (func $t (param i32) (result f64)))
  (memory (export "memory") 1 1)
  (func (export "evaluate") (param i64) (result i32)
    (if (result i32) (f64.gt (call $t (i32.const 0)) (f64.const 95))
      (then (i32.const 3)) (else (i32.const 1))))
"""


def meta(policy: str = "boiler-guard", version: str = "1.2.0", **overrides: object) -> dict:
    doc = {"abi": 1, "policy": policy, "version": version, "source_hash": "sha256:" + "ab" * 32,
           "compiler": "scc-0.1.0", "gas_max": 12, "combine": "first-match", "default": "DENY",
           "inputs": {"telemetry": [{"name": "pressure_bar", "type": "number"}], "context": []},
           "rules": [{"id": "halt", "then": "HALT"}, {"id": "ok", "then": "ALLOW"}], "sites": []}
    doc.update(overrides)
    return doc




def wat_module(wat: str = GOOD_WAT, *, pad: int = 0, **meta_fields: object) -> bytes:
    """A hand-written module with a `sopcos.meta` section (and `pad` bytes of padding before it)."""
    wasm = bytes(wasmtime.wat2wasm(f"(module {wat})"))
    if pad:
        wasm += abi.custom_section("padding", bytes(random.Random(pad).randbytes(pad)))
    return wasm + abi.custom_section(abi.META_SECTION, rfc8785.dumps(meta(**meta_fields)))


@cache
def compiled(policy: str = "boiler-guard") -> bytes:
    """The real compiler's module for one of the example policies."""
    return compile_policy((POLICIES / f"{policy}.json").read_bytes()).wasm


def tamper_cases(world: World, doc: dict) -> list[tuple[str, object, str]]:
    """Each leaf of a signed envelope (`doc`, parsed), edited to another value of the right form without
    re-signing: (leaf path, new value, the error code verification must give)."""
    other_hash = "sha256:" + "cd" * 32
    cases = [
        ("header/magic", "SOPX", "AXON-VERIFY-MAGIC"),
        ("header/version", "1.2", "AXON-VERIFY-VERSION"),
        ("header/type", "WASM_MODULE", "AXON-VERIFY-TYPE"),
        ("header/kid", world.junior.did, "AXON-VERIFY-SIGNATURE"),
        ("header/kid", "did:sopcos:nobody#key-1", "AXON-VERIFY-SIGNER-UNKNOWN"),
        ("meta/source_hash", other_hash, "AXON-VERIFY-SIGNATURE"),
        ("meta/compiler_version", "scc-9.9.9", "AXON-VERIFY-SIGNATURE"),
        ("meta/authority_level", "LVL_1", "AXON-VERIFY-SIGNATURE"),
        ("meta/urn", "urn:sopcos:artifact:sha256:" + "cd" * 32, "AXON-VERIFY-SIGNATURE"),
        ("meta/policy", "tank-overfill", "AXON-VERIFY-SIGNATURE"),
        ("meta/version", "1.2.1", "AXON-VERIFY-SIGNATURE"),
        ("meta/abi", 2, "AXON-VERIFY-SIGNATURE"),
        ("meta/gas_max", 13, "AXON-VERIFY-SIGNATURE"),
        ("meta/created_at", NOW - 1, "AXON-VERIFY-SIGNATURE"),
        ("meta/expires_at", NOW + 10**6, "AXON-VERIFY-SIGNATURE"),
        ("distribution/storage_hint", "s3://elsewhere/", "AXON-VERIFY-SIGNATURE"),
        ("payload/integrity", other_hash, "AXON-VERIFY-SIGNATURE"),
        ("payload/blob", flip_b64(doc["payload"]["blob"]), "AXON-VERIFY-SIGNATURE"),
        ("signature", flip_b64(doc["signature"], at=10), "AXON-VERIFY-SIGNATURE"),
    ]
    if doc["encryption"]["enabled"]:
        cases += [
            ("encryption/enabled", False, "AXON-VERIFY-SCHEMA"),
            ("encryption/algo", "AES-128-GCM", "AXON-VERIFY-SCHEMA"),
            ("encryption/iv", flip_b64(doc["encryption"]["iv"]), "AXON-VERIFY-SIGNATURE"),
            ("encryption/recipient_context", "did:sopcos:group:other", "AXON-VERIFY-SIGNATURE"),
            ("encryption/recipients/0/kid", world.outsider.did, "AXON-VERIFY-SIGNATURE"),
            ("encryption/recipients/0/ephem_pub", flip_b64(doc["encryption"]["recipients"][0]["ephem_pub"]),
             "AXON-VERIFY-SIGNATURE"),
            ("encryption/recipients/0/iv", flip_b64(doc["encryption"]["recipients"][0]["iv"]),
             "AXON-VERIFY-SIGNATURE"),
            ("encryption/recipients/0/wrapped_key",
             flip_b64(doc["encryption"]["recipients"][0]["wrapped_key"]), "AXON-VERIFY-SIGNATURE"),
        ]
    else:
        cases.append(("encryption/enabled", True, "AXON-VERIFY-SCHEMA"))
    return cases


def flip_b64(text: str, at: int = 5) -> str:
    """`text` (base64) with the character at `at` changed to the next one of the alphabet."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return text[:at] + alphabet[(alphabet.index(text[at]) + 1) % 64] + text[at + 1:]


def set_leaf(doc: dict, path: str, value: object) -> dict:
    """A copy of `doc` with the leaf at `path` (keys and list indexes joined by "/") set to `value`."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split("/")
    target = doc
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[last] = value
    return doc
