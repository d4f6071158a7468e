"""Shared fixtures of the messaging tests: deterministic keys and a small embedded ledger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from axon.keys import Identity, SigningKey, did_for
from axon.ledger import Ledger, ops

T0 = 1_736_524_000


def identity(seed: int, name: str) -> Identity:
    key = SigningKey(bytes([seed]) * 32)
    return Identity(key, did_for(key.public_key, name))


@dataclass
class Plant:
    ledger: Ledger
    root: Identity  # LVL_5
    admin: Identity  # LVL_4
    operator: Identity  # LVL_3
    engineer: Identity  # LVL_2
    viewer: Identity  # LVL_1
    node: Identity  # the sidecar receiving messages, LVL_2
    outsider: Identity  # never registered


def plant(tmp_path: Path) -> Plant:
    root = identity(1, "root")
    ledger = Ledger.init(tmp_path / "ledger.db", root, now=T0 - 100)
    people = {"admin": (identity(2, "admin"), 4), "operator": (identity(3, "operator"), 3),
              "engineer": (identity(4, "engineer"), 2), "viewer": (identity(5, "viewer"), 1),
              "node": (identity(6, "node-7"), 2)}
    for who, level in people.values():
        ledger.sign_and_submit(root, ops.register_key(who.did, who.key.public_key, level), T0 - 90)
    return Plant(ledger, root, *(p[0] for p in people.values()), identity(9, "outsider"))
