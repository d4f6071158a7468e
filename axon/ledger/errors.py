"""The ledger's exception tree. Each class has a stable code; callers branch on the class or the code."""

from __future__ import annotations

from axon.errors import AxonError


class LedgerError(AxonError):
    code = "AXON-LEDGER"


class LedgerStorageError(LedgerError):
    """The ledger file cannot be created, opened, read or written, or is not a ledger."""

    code = "AXON-LEDGER-STORAGE"


class RejectedTransaction(LedgerError):
    """A submitted transaction was refused; nothing was appended."""

    code = "AXON-LEDGER-REJECTED"


class MalformedOperation(RejectedTransaction):
    """The transaction or the operation in its data is not well formed (RLP, canonical JSON, schema)."""

    code = "AXON-LEDGER-OP-MALFORMED"


class BadSignature(RejectedTransaction):
    code = "AXON-LEDGER-SIGNATURE"


class WrongChain(RejectedTransaction):
    """Not signed for this ledger's chain id (or not EIP-155 protected at all)."""

    code = "AXON-LEDGER-CHAIN-ID"


class NonceError(RejectedTransaction):
    code = "AXON-LEDGER-NONCE"


class ReplayedTransaction(NonceError):
    """The sender's nonce was already used: a replay, or a second transaction racing the first."""

    code = "AXON-LEDGER-REPLAY"


class NonceGap(NonceError):
    """The nonce is ahead of the next expected one: transactions must arrive in order."""

    code = "AXON-LEDGER-NONCE-GAP"


class UnknownSender(RejectedTransaction):
    code = "AXON-LEDGER-SENDER-UNKNOWN"


class RevokedSender(RejectedTransaction):
    code = "AXON-LEDGER-SENDER-REVOKED"


class AuthorityDenied(RejectedTransaction):
    """The sender is registered but its level or role does not allow this operation."""

    code = "AXON-LEDGER-AUTHORITY"


class InvalidOperation(RejectedTransaction):
    """Well formed and authorised, but contradicts the ledger's state (unknown target, already revoked...)."""

    code = "AXON-LEDGER-OP-INVALID"


class ChainUnavailable(LedgerError):
    """The Ethereum node holding the ledger cannot be reached or answered badly (chain.py)."""

    code = "AXON-LEDGER-CHAIN-UNAVAILABLE"


class ChainMismatch(LedgerError):
    """The Ethereum node is another chain than the one the local index was built from."""

    code = "AXON-LEDGER-CHAIN-MISMATCH"


class ChainRefused(RejectedTransaction):
    """The Ethereum node refused the transaction (nonce used, funds for gas, gas price too low...)."""

    code = "AXON-LEDGER-CHAIN-REFUSED"


class ChainPending(LedgerError):
    """The operation is on the chain but does not count yet (not enough confirmations within the wait)."""

    code = "AXON-LEDGER-CHAIN-PENDING"


class ChainBroken(LedgerError):
    """Stored entries do not replay to the same chain: tampering or corruption, at entry `seq`."""

    code = "AXON-LEDGER-CHAIN-BROKEN"

    def __init__(self, seq: int, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"ledger entry {seq}: {reason}", code=code)
        self.seq = seq
        self.reason = reason

    def to_dict(self) -> dict:
        return {**super().to_dict(), "seq": self.seq}
