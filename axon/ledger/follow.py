"""Following a ledger kept on an Ethereum chain: blocks in, index entries out, reorganisations undone.

No I/O of its own: `follow` takes a `BlockSource` (chain.py's web3 shell, or a list of blocks in a test)
and the local index (a chain-index `Ledger`). Every registry transaction goes through the ledger's own
admission checks (ledger.py/state.py), in block order; what they refuse is reported and skipped, as the
embedded ledger refuses it. An operation counts once its block has `confirmations` blocks on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from axon.ledger.errors import LedgerError
from axon.ledger.ledger import Ledger
from axon.ledger.records import Entry

DEFAULT_BLOCKS_PER_STEP = 2000
BLOCKS_PER_BATCH = 100  # fetched in one JSON-RPC batch and indexed in one SQLite transaction


@dataclass(frozen=True)
class Block:
    """A block as the follower needs it. `transactions`: the signed bytes of every transaction sent to
    the registry address, in block order (a transaction the shell could not turn into bytes is given as
    its hash and reason in `unreadable`)."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    transactions: tuple[bytes, ...] = ()
    unreadable: tuple[tuple[bytes, str], ...] = ()


class BlockSource(Protocol):
    def head_number(self) -> int: ...

    def block_hash(self, number: int) -> bytes | None:
        """The hash of the chain's block `number`, None when the chain is shorter."""

    def blocks(self, numbers: range) -> list[Block]:
        """The blocks `numbers`, in order (fewer when the chain is shorter)."""


@dataclass(frozen=True)
class Refusal:
    block: int
    tx_hash: bytes
    code: str
    reason: str


@dataclass
class FollowReport:
    """One step: the chain's head, the last block indexed, what was added, refused and rewound."""

    chain_head: int
    indexed_block: int | None
    admitted: list[Entry] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    fork_block: int | None = None  # a reorganisation: blocks after this one were undone
    rewound_entries: int = 0

    @property
    def caught_up(self) -> bool:
        return self.indexed_block is not None and self.indexed_block >= self.chain_head


def confirmed_head(chain_head: int, confirmations: int) -> int:
    """The newest block whose operations count: it has `confirmations` blocks on top of it."""
    return chain_head - confirmations


def follow(index: Ledger, source: BlockSource, confirmations: int, *, start_block: int = 0,
           max_blocks: int = DEFAULT_BLOCKS_PER_STEP) -> FollowReport:
    """Bring `index` up to the chain's confirmed head (at most `max_blocks` blocks this step): first undo
    indexed blocks the chain no longer holds (rewind to the newest block it still has), then index the
    confirmed blocks after the last one indexed."""
    if confirmations < 0:
        raise LedgerError(f"confirmations must be >= 0, not {confirmations}")
    chain_head = source.head_number()
    report = FollowReport(chain_head=chain_head, indexed_block=None)
    blocks = index.indexed_blocks()
    fork = _fork_point(blocks, source)
    if fork is not None:
        before = index.head_seq
        seq, _ = index.rewind_to_block(fork)
        report.fork_block, report.rewound_entries = fork, before - seq
        blocks = index.indexed_blocks()
    last_number, last_hash = (blocks[0][0], blocks[0][1]) if blocks else (start_block - 1, None)
    target = min(confirmed_head(chain_head, confirmations), last_number + max_blocks)
    for first in range(last_number + 1, target + 1, BLOCKS_PER_BATCH):
        fetched = source.blocks(range(first, min(first + BLOCKS_PER_BATCH, target + 1)))
        linked: list[Block] = []
        for block in fetched:
            if last_hash is not None and block.parent_hash != last_hash:
                break  # the chain changed under this step: the next step finds the fork
            linked.append(block)
            last_hash = block.hash
        results = index.apply_blocks([(b.number, b.hash, b.timestamp, b.transactions) for b in linked])
        for block, (admitted, refused) in zip(linked, results, strict=True):
            report.admitted += admitted
            report.refused += [Refusal(block.number, tx_hash, exc.code, str(exc)) for tx_hash, exc in refused]
            report.refused += [Refusal(block.number, tx_hash, "AXON-LEDGER-OP-MALFORMED", why)
                               for tx_hash, why in block.unreadable]
            last_number = block.number
        if len(linked) < len(range(first, min(first + BLOCKS_PER_BATCH, target + 1))):
            break
    report.indexed_block = last_number if last_number >= start_block else None
    return report


def _fork_point(blocks: list[tuple[int, bytes, int]], source: BlockSource) -> int | None:
    """None when the newest indexed block is still on the chain; else the newest indexed block that is
    (every block at or before it is then the same), or -1 when none is."""
    if not blocks or source.block_hash(blocks[0][0]) == blocks[0][1]:
        return None
    for number, block_hash, _ in blocks[1:]:
        if source.block_hash(number) == block_hash:
            return number
    return -1
