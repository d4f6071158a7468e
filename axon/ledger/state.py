"""The ledger as a pure state machine: admit a signed transaction (every check, in order), then commit it.

No I/O and no clock: `now` is passed in. The same code appends new entries and replays stored ones, so
`verify_chain()` re-runs exactly the checks that admitted each entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from eth_hash.auto import keccak

from axon import ethtx
from axon.keys import InvalidKey, PublicKey
from axon.ledger import authority, ops
from axon.ledger.errors import (
    BadSignature,
    LedgerError,
    MalformedOperation,
    NonceGap,
    ReplayedTransaction,
    WrongChain,
)
from axon.ledger.ops import AuthorityLevel, Op
from axon.ledger.records import (
    GENESIS_PREV_HASH,
    ArtifactRecord,
    Entry,
    GroupRecord,
    KeyRecord,
    PolicyRecord,
    entry_hash,
)

# Operations are sent to this fixed address (last 20 bytes of keccak-256("sopcos:ledger:registry")), not
# as contract creations, so the same bytes are plain calls with JSON call data on a real Ethereum node.
REGISTRY_ADDRESS = keccak(b"sopcos:ledger:registry")[-20:]
MAX_TIMESTAMP = 2**63 - 1


def intrinsic_gas(data: bytes) -> int:
    """Ethereum's intrinsic gas for a call carrying `data`: 21000 + 16 per non-zero and 4 per zero byte,
    or since Prague (EIP-7623) the calldata floor 21000 + 10 per token (4 per non-zero byte, 1 per zero
    byte) when that is more, so that a node of either fork includes the transaction."""
    zero = data.count(0)
    nonzero = len(data) - zero
    return 21000 + max(16 * nonzero + 4 * zero, 10 * (4 * nonzero + zero))


def operation_transaction(op: dict[str, Any], nonce: int, gas_price: int = 0) -> ethtx.Transaction:
    """The unsigned transaction that carries `op`: to the registry, no value, gas price 0 unless the
    chain it is sent to charges for gas (docs/fleet.md)."""
    data = ops.encode(op)
    return ethtx.Transaction(nonce=nonce, gas_price=gas_price, gas_limit=intrinsic_gas(data),
                             to=REGISTRY_ADDRESS, value=0, data=data)


@dataclass(frozen=True)
class _Admitted:
    tx: ethtx.Transaction
    public_key: PublicKey
    sender: str
    op: dict[str, Any]


class LedgerState:
    """Keys, groups, artifacts, nonces and the chain head, derived only from admitted entries."""

    def __init__(self, chain_id: int, *, chain_ordered: bool = False) -> None:
        self.chain_id = chain_id
        # On an Ethereum chain the node has already made each (sender, nonce) unique and ordered, and a
        # key's transaction the index refused still used its nonce there: nonces must then increase,
        # not be exactly the next one (docs/fleet.md). The embedded ledger requires the exact next nonce.
        self.chain_ordered = chain_ordered
        self.keys: dict[str, KeyRecord] = {}
        self.did_of_address: dict[str, str] = {}
        self.groups: dict[str, GroupRecord] = {}
        self.artifacts: dict[str, ArtifactRecord] = {}
        self.policies: dict[str, PolicyRecord] = {}  # policy name -> its binding (rule 12)
        self.nonces: dict[str, int] = {}
        self.inbox: dict[str, list[int]] = {}
        self.log_anchors: dict[str, list[int]] = {}  # node DID -> seqs of its LOG_ANCHOR entries
        self.head_seq = 0
        self.head_hash = GENESIS_PREV_HASH
        self.root_did: str | None = None

    def nonce_of(self, address: str) -> int:
        return self.nonces.get(address.lower(), 0)

    def key_by_address(self, address: str) -> KeyRecord | None:
        did = self.did_of_address.get(address.lower())
        return None if did is None else self.keys[did]

    # --- admission: the numbered checks of docs/ledger.md §Checks ---------------------------------------

    def admit(self, raw: bytes, now: int) -> Entry:
        """Every check, in order, without changing the state; the entry `commit` would append."""
        if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= MAX_TIMESTAMP:
            raise LedgerError(f"now must be Unix seconds as a non-negative int, not {now!r}")
        tx = self._decode(raw)                      # 1. strict RLP legacy transaction
        public_key = self._check_signature(tx)      # 2. low-S signature, recover the sender
        self._check_chain(tx)                       # 3. EIP-155 with this ledger's chain id
        self._check_envelope(tx)                    # 4. to the registry, no value
        sender = public_key.address
        op = self._decode_op(tx)                    # 5. canonical JSON, schema
        actor = self._check_actor(sender, op)       # 6. registered, not revoked (or genesis)
        self._check_nonce(sender, tx.nonce)         # 7. exactly the next nonce
        _RULES[op["op"]](self, actor, op)            # 8. authority and state rules for this operation
        seq = self.head_seq + 1
        tx_hash = tx.hash
        return Entry(seq=seq, timestamp=now, tx=bytes(raw), tx_hash=tx_hash, sender=sender,
                     nonce=tx.nonce, op=op, prev_hash=self.head_hash,
                     entry_hash=entry_hash(self.head_hash, tx_hash, seq, now))

    @staticmethod
    def _decode(raw: bytes) -> ethtx.Transaction:
        try:
            return ethtx.decode(bytes(raw))
        except ethtx.TransactionError as exc:
            raise MalformedOperation(str(exc)) from exc
        except TypeError as exc:
            raise MalformedOperation("a transaction is bytes") from exc

    def _check_chain(self, tx: ethtx.Transaction) -> None:
        if tx.chain_id is None:
            raise WrongChain("transaction is not EIP-155 replay-protected; sign it for this ledger's "
                             f"chain id {self.chain_id}")
        if tx.chain_id != self.chain_id:
            raise WrongChain(f"transaction is for chain id {tx.chain_id}; this ledger is chain id "
                             f"{self.chain_id}")

    @staticmethod
    def _check_signature(tx: ethtx.Transaction) -> PublicKey:
        try:
            return tx.sender()
        except ethtx.TransactionError as exc:
            raise BadSignature(str(exc)) from exc

    @staticmethod
    def _check_envelope(tx: ethtx.Transaction) -> None:
        if tx.to != REGISTRY_ADDRESS:
            raise MalformedOperation("ledger operations are sent to the registry address "
                                     f"0x{REGISTRY_ADDRESS.hex()}")
        if tx.value != 0:
            raise MalformedOperation("ledger operations carry no value")

    @staticmethod
    def _decode_op(tx: ethtx.Transaction) -> dict[str, Any]:
        return ops.decode(tx.data)

    def _check_actor(self, sender: str, op: dict[str, Any]) -> KeyRecord | None:
        if self.head_seq == 0:
            if op["op"] != Op.KEY_REGISTER.name:
                raise MalformedOperation("the first entry of a ledger must register its root key")
            authority.genesis(sender, _public_key(op).address, AuthorityLevel.parse(op["level"]))
            return None
        return authority.active_actor(self.key_by_address(sender), sender)

    def _check_nonce(self, sender: str, nonce: int) -> None:
        expected = self.nonce_of(sender)
        if nonce < expected:
            raise ReplayedTransaction(f"nonce {nonce} of {sender} is already used (next is {expected})")
        if nonce > expected and not self.chain_ordered:
            raise NonceGap(f"nonce {nonce} of {sender} is ahead of the next expected nonce {expected}")

    # --- commit -----------------------------------------------------------------------------------------

    def commit(self, entry: Entry) -> None:
        """Apply an entry `admit` returned (and nothing has been committed since)."""
        if entry.seq != self.head_seq + 1 or entry.prev_hash != self.head_hash:
            raise LedgerError(f"entry {entry.seq} does not follow the head {self.head_seq}")
        actor_did = self.did_of_address.get(entry.sender)
        _EFFECTS[entry.op["op"]](self, actor_did, entry)
        self.nonces[entry.sender] = entry.nonce + 1
        self.head_seq, self.head_hash = entry.seq, entry.entry_hash

    def successor_of(self, urn: str) -> str | None:
        record = self.artifacts.get(urn)
        return None if record is None else record.superseded_by


# --- per-operation rules (checked on admit) and effects (applied on commit) --------------------------


def _rule_key_register(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    address = _public_key(op).address
    if actor is not None:
        authority.may_register_key(actor, AuthorityLevel.parse(op["level"]))
    authority.key_is_new(op["did"], address, state.keys, state.did_of_address, state.groups)


def _rule_key_revoke(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    target = authority.existing_key(op["did"], state.keys)
    authority.may_revoke_key(_acting(actor), target)
    authority.not_revoked_key(target)


def _rule_group_define(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    existing = state.groups.get(op["group"])
    definer = None if existing is None else state.keys[existing.defined_by]
    authority.may_define_group(_acting(actor), existing, definer)
    authority.group_members_valid(op["group"], op["members"], state.keys)


def _rule_artifact_register(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    level = AuthorityLevel.parse(op["authority_level"])
    authority.may_register_artifact(_acting(actor), level)
    authority.may_publish_policy(_acting(actor), state.policies.get(op["policy"]), level)
    authority.artifact_is_new(op["urn"], state.artifacts)


def _rule_artifact_revoke(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    record = authority.existing_artifact(op["urn"], state.artifacts)
    authority.may_retire_artifact(_acting(actor), record, state.keys[record.registered_by])
    authority.not_revoked_artifact(record)


def _rule_artifact_supersede(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    old = authority.existing_artifact(op["urn"], state.artifacts)
    authority.may_retire_artifact(_acting(actor), old, state.keys[old.registered_by])
    authority.live_artifact(old)
    new = authority.existing_artifact(op["successor"], state.artifacts)
    authority.valid_successor(old, new, state.successor_of)


def _rule_message(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    _acting(actor)  # rule 10: being an active key is enough


def _rule_log_anchor(state: LedgerState, actor: KeyRecord | None, op: dict[str, Any]) -> None:
    authority.anchors_own_log(_acting(actor), op["node"])


def _public_key(op: dict[str, Any]) -> PublicKey:
    try:
        return PublicKey.from_hex(op["public_key"])
    except InvalidKey as exc:
        raise MalformedOperation(f"{op['op']} public_key is not a point on secp256k1") from exc


def _acting(actor: KeyRecord | None) -> KeyRecord:
    if actor is None:  # only the genesis entry has no registered actor, and it is a KEY_REGISTER
        raise MalformedOperation("the first entry of a ledger must register its root key")
    return actor


def _effect_key_register(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    op = entry.op
    public_key = PublicKey.from_hex(op["public_key"])
    record = KeyRecord(did=op["did"], public_key=public_key, address=public_key.address,
                       level=int(AuthorityLevel.parse(op["level"])), registered_by=actor_did or op["did"],
                       registered_seq=entry.seq)
    state.keys[record.did] = record
    state.did_of_address[record.address] = record.did
    if actor_did is None:
        state.root_did = record.did


def _effect_key_revoke(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    did = entry.op["did"]
    state.keys[did] = replace(state.keys[did], revoked=True, revoked_by=actor_did, revoked_seq=entry.seq)


def _effect_group_define(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    group = entry.op["group"]
    state.groups[group] = GroupRecord(group=group, members=tuple(entry.op["members"]),
                                      defined_by=str(actor_did), defined_seq=entry.seq)


def _effect_artifact_register(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    op = entry.op
    state.artifacts[op["urn"]] = ArtifactRecord(
        urn=op["urn"], policy=op["policy"], version=op["version"],
        authority_level=int(AuthorityLevel.parse(op["authority_level"])), registered_by=str(actor_did),
        registered_seq=entry.seq,
    )
    _bind_policy(state, state.artifacts[op["urn"]])


def _bind_policy(state: LedgerState, artifact: ArtifactRecord) -> None:
    """Rule 12: the first registration binds the name; an admitted lower declaration lowers its level."""
    policy = state.policies.get(artifact.policy)
    if policy is None:
        owner = state.keys[artifact.registered_by]
        state.policies[artifact.policy] = PolicyRecord(
            policy=artifact.policy, owner=owner.did, owner_level=owner.level, level=artifact.authority_level,
            registered_seq=artifact.registered_seq, level_seq=artifact.registered_seq)
    elif artifact.authority_level < policy.level:
        state.policies[artifact.policy] = replace(policy, level=artifact.authority_level,
                                                  level_seq=artifact.registered_seq)


def _effect_artifact_revoke(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    urn = entry.op["urn"]
    state.artifacts[urn] = replace(state.artifacts[urn], revoked=True, revoke_reason=entry.op["reason"],
                                   revoked_seq=entry.seq)


def _effect_artifact_supersede(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    urn = entry.op["urn"]
    state.artifacts[urn] = replace(state.artifacts[urn], superseded_by=entry.op["successor"],
                                   superseded_seq=entry.seq)


def _effect_message(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    state.inbox.setdefault(entry.op["to"], []).append(entry.seq)


def _effect_log_anchor(state: LedgerState, actor_did: str | None, entry: Entry) -> None:
    state.log_anchors.setdefault(entry.op["node"], []).append(entry.seq)


_Rule = Callable[[LedgerState, "KeyRecord | None", dict[str, Any]], None]
_Effect = Callable[[LedgerState, "str | None", Entry], None]
_RULES: dict[str, _Rule] = {
    Op.KEY_REGISTER.name: _rule_key_register,
    Op.KEY_REVOKE.name: _rule_key_revoke,
    Op.GROUP_DEFINE.name: _rule_group_define,
    Op.ARTIFACT_REGISTER.name: _rule_artifact_register,
    Op.ARTIFACT_REVOKE.name: _rule_artifact_revoke,
    Op.ARTIFACT_SUPERSEDE.name: _rule_artifact_supersede,
    Op.MESSAGE.name: _rule_message,
    Op.LOG_ANCHOR.name: _rule_log_anchor,
}
_EFFECTS: dict[str, _Effect] = {
    Op.KEY_REGISTER.name: _effect_key_register,
    Op.KEY_REVOKE.name: _effect_key_revoke,
    Op.GROUP_DEFINE.name: _effect_group_define,
    Op.ARTIFACT_REGISTER.name: _effect_artifact_register,
    Op.ARTIFACT_REVOKE.name: _effect_artifact_revoke,
    Op.ARTIFACT_SUPERSEDE.name: _effect_artifact_supersede,
    Op.MESSAGE.name: _effect_message,
    Op.LOG_ANCHOR.name: _effect_log_anchor,
}
