"""The embedded ledger: keys and their authority levels, groups, artifacts and messages, as a hash-chained
log of signed EIP-155 Ethereum transactions (docs/ledger.md).

    from axon.ledger import Ledger, Op, AuthorityLevel, ops
"""

from axon.ledger import ops
from axon.ledger.errors import (
    AuthorityDenied,
    BadSignature,
    ChainBroken,
    InvalidOperation,
    LedgerError,
    LedgerStorageError,
    MalformedOperation,
    NonceError,
    NonceGap,
    RejectedTransaction,
    ReplayedTransaction,
    RevokedSender,
    UnknownSender,
    WrongChain,
)
from axon.ledger.ledger import DEFAULT_CHAIN_ID, ChainReport, Ledger
from axon.ledger.ops import AuthorityLevel, Op
from axon.ledger.records import ArtifactRecord, Entry, GroupRecord, KeyRecord, PolicyRecord
from axon.ledger.state import REGISTRY_ADDRESS, operation_transaction

__all__ = [
    "DEFAULT_CHAIN_ID", "REGISTRY_ADDRESS", "ArtifactRecord", "AuthorityDenied", "AuthorityLevel",
    "BadSignature", "ChainBroken", "ChainReport", "Entry", "GroupRecord", "InvalidOperation", "KeyRecord",
    "Ledger", "LedgerError", "LedgerStorageError", "MalformedOperation", "NonceError", "NonceGap", "Op",
    "PolicyRecord", "RejectedTransaction", "ReplayedTransaction", "RevokedSender", "UnknownSender",
    "WrongChain", "operation_transaction", "ops",
]
