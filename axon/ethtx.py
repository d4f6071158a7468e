"""Ethereum legacy transactions (RLP, secp256k1), as in draft-urien-08 §2.2 and EIP-155.

The ledger signs its operations as these transactions, and constraint nodes sign their readings with
them, so the very same bytes could be sent to an Ethereum node. Encoding is done by `rlp`, hashing by
`eth-hash` (keccak-256), signing and recovery by libsecp256k1 (coincurve).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import rlp
from eth_hash.auto import keccak
from rlp.sedes import Binary, big_endian_int, binary

from axon.errors import AxonError
from axon.keys import InvalidKey, PublicKey, Signer, recover

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_TX_SIZE = 128 * 1024


class TransactionError(AxonError):
    code = "AXON-TX"


class MalformedTransaction(TransactionError):
    code = "AXON-TX-MALFORMED"


class BadTransactionSignature(TransactionError):
    code = "AXON-TX-SIGNATURE"


class _SignedSedes(rlp.Serializable):
    fields = [
        ("nonce", big_endian_int), ("gas_price", big_endian_int), ("gas_limit", big_endian_int),
        ("to", Binary.fixed_length(20, allow_empty=True)), ("value", big_endian_int), ("data", binary),
        ("v", big_endian_int), ("r", big_endian_int), ("s", big_endian_int),
    ]


@dataclass(frozen=True)
class Transaction:
    """A legacy Ethereum transaction. `to` is 20 bytes, or empty for contract creation."""

    nonce: int
    gas_price: int
    gas_limit: int
    to: bytes
    value: int
    data: bytes
    v: int = 0
    r: int = 0
    s: int = 0

    @property
    def chain_id(self) -> int | None:
        """The EIP-155 chain id, or None for a pre-EIP-155 (v = 27/28) or unsigned transaction."""
        return None if self.v < 35 else (self.v - 35) // 2

    @property
    def is_signed(self) -> bool:
        return self.r != 0

    def signing_payload(self, chain_id: int | None) -> bytes:
        fields = [self.nonce, self.gas_price, self.gas_limit, self.to, self.value, self.data]
        if chain_id is not None:
            fields += [chain_id, 0, 0]  # EIP-155: sign over (…, chain_id, 0, 0)
        return rlp.encode(fields)

    def sign(self, key: Signer, chain_id: int | None) -> Transaction:
        digest = keccak(self.signing_payload(chain_id))
        sig = key.sign_recoverable(digest)
        recid = sig[64]
        v = 27 + recid if chain_id is None else chain_id * 2 + 35 + recid
        return replace(self, v=v, r=int.from_bytes(sig[:32], "big"), s=int.from_bytes(sig[32:64], "big"))

    def encode(self) -> bytes:
        return rlp.encode(_SignedSedes(self.nonce, self.gas_price, self.gas_limit, self.to, self.value,
                                       self.data, self.v, self.r, self.s))

    @property
    def hash(self) -> bytes:
        """The transaction id: keccak-256 of the signed encoding."""
        return keccak(self.encode())

    def sender(self) -> PublicKey:
        """Recover the signer's public key; rejects high-S (EIP-2) and malformed v/r/s."""
        if not (0 < self.r < _N and 0 < self.s <= _N // 2):
            raise BadTransactionSignature("signature r/s out of range (high-S signatures are rejected)")
        if self.v in (27, 28):
            recid, chain_id = self.v - 27, None
        elif self.v >= 37:
            recid, chain_id = (self.v - 35) % 2, (self.v - 35) // 2
        else:
            raise BadTransactionSignature(f"invalid v value {self.v}")
        digest = keccak(self.signing_payload(chain_id))
        sig = self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([recid])
        try:
            return recover(sig, digest)
        except InvalidKey as exc:
            raise BadTransactionSignature("signature does not recover to a public key") from exc

    def to_dict(self) -> dict:
        return {
            "nonce": self.nonce, "gas_price": self.gas_price, "gas_limit": self.gas_limit,
            "to": "0x" + self.to.hex() if self.to else None, "value": self.value,
            "data": "0x" + self.data.hex(), "v": self.v, "r": hex(self.r), "s": hex(self.s),
            "chain_id": self.chain_id,
        }


def decode(raw: bytes) -> Transaction:
    """Strictly decode a signed legacy transaction (canonical RLP, nothing trailing)."""
    if len(raw) > MAX_TX_SIZE:
        raise MalformedTransaction(f"transaction is {len(raw)} bytes; the limit is {MAX_TX_SIZE}")
    try:
        t = rlp.decode(raw, _SignedSedes, strict=True)
    # rlp raises TypeError when a list stands where an integer field belongs.
    except (rlp.exceptions.RLPException, TypeError, ValueError) as exc:
        raise MalformedTransaction(f"not a legacy RLP transaction: {_first_line(exc)}") from exc
    return Transaction(t.nonce, t.gas_price, t.gas_limit, t.to, t.value, t.data, t.v, t.r, t.s)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
