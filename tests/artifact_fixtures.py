"""Shared set-up for the artifact tests: a ledger with known keys, and policy modules to package.

`World` is a fresh ledger in a temporary directory: a root (LVL_5), an author (LVL_3), a junior
author (LVL_2), two nodes in the group `did:sopcos:group:plant` and one outsider node. Keys are
derived from fixed labels, so failures reproduce.
"""

from __future__ import annotations

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
from axon.envelope import Envelope, PackageSpec
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
                register: bool = True) -> Envelope:
        signer = signer or self.author
        recipients: Recipients | None = resolve_recipients(encrypt_for, self.ledger) if encrypt_for else None
        spec = PackageSpec(level, self.now if created_at is None else created_at, expires_at, storage_hint,
                           recipients)
        envelope = env_mod.build(module, signer, spec)
        if register:
            self.register(envelope, by=signer)
        return envelope

    def register(self, envelope: Envelope, by: Identity | None = None) -> None:
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
