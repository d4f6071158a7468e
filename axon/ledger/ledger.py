"""The Ledger facade: a hash-chained, SQLite-backed log of signed operations and the state they build.

Opening a ledger replays every stored entry through the same checks that admitted it (signature, chain
id, nonce, schema, authority, hash links), so state is only ever derived from verified entries. Appends
take SQLite's write lock, catch up with entries other processes appended, then admit and store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from axon import ethtx, strictjson
from axon.keys import Identity, PublicKey, Signer
from axon.ledger import checkpoint, ops
from axon.ledger.errors import ChainBroken, LedgerError
from axon.ledger.records import ArtifactRecord, Entry, GroupRecord, KeyRecord, PolicyRecord
from axon.ledger.state import LedgerState, operation_transaction
from axon.ledger.store import Store, StoredRow, op_text

DEFAULT_CHAIN_ID = 7317  # a private id; give each deployment its own with --chain-id
MAX_CHAIN_ID = 2**53 - 1  # EIP-2294's bound, so v and the id survive every JSON/JavaScript toolchain


@dataclass(frozen=True)
class ChainReport:
    """A successful verify_chain(): how many entries, and the head to compare with a recorded one."""

    entries: int
    head_seq: int
    head_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "entries": self.entries, "head_seq": self.head_seq,
                "head_hash": self.head_hash.hex()}


class Ledger:
    """Open with `Ledger.open(path)` or create with `Ledger.init(path, root, chain_id)`."""

    def __init__(self, store: Store, state: LedgerState) -> None:
        self._store = store
        self._state = state
        self._lock = threading.RLock()
        self._seen_version: int | None = None  # the file's data_version when state last caught up
        self._rewinds = 0  # the store's rewind count the state was built at (chain indexes only)
        self.checkpoint_seq = 0  # entries up to here came from a signed checkpoint, not a replay
        self.checkpoint_refused: str | None = None  # why the trusted keys' newest checkpoint was not used

    # --- lifecycle ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, checkpoint_keys: Sequence[PublicKey] = ()) -> Ledger:
        """Open an existing ledger; raises ChainBroken if its stored entries do not replay. With
        `checkpoint_keys`, the newest checkpoint one of them signed spares replaying the entries up to it
        (checkpoint.py says what that trusts); a checkpoint that does not check out is not used."""
        store = Store.open(path)
        try:
            ledger = cls(store, LedgerState(store.chain_id, chain_ordered=store.chain_index))
            if checkpoint_keys:
                ledger._restore_checkpoint(checkpoint_keys)
            ledger._sync()
        except BaseException:
            store.close()
            raise
        return ledger

    @classmethod
    def init(cls, path: str | Path, root: Identity, chain_id: int = DEFAULT_CHAIN_ID,
             now: int | None = None) -> Ledger:
        """Create a ledger whose genesis entry registers `root` at LVL_5, signed by root itself."""
        _check_chain_id(chain_id)
        now = int(time.time()) if now is None else now
        state = LedgerState(chain_id)
        genesis_op = ops.register_key(root.did, root.key.public_key, "LVL_5")
        raw = operation_transaction(genesis_op, nonce=0).sign(root.key, chain_id).encode()
        genesis = state.admit(raw, now)  # checked before any file is created
        store = Store.create(path, chain_id)
        try:
            with store.writing():
                store.append(genesis)
            state.commit(genesis)
        except BaseException:
            store.close()
            raise
        return cls(store, state)

    @classmethod
    def create_chain_index(cls, path: str | Path, chain_id: int) -> Ledger:
        """Create the empty local index of a ledger kept on the Ethereum chain `chain_id` (chain.py)."""
        _check_chain_id(chain_id)
        store = Store.create(path, chain_id, chain_index=True)
        return cls(store, LedgerState(chain_id, chain_ordered=True))

    @property
    def is_chain_index(self) -> bool:
        """True for the local index of a ledger on an Ethereum chain: entries come only from its blocks."""
        return self._store.chain_index

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._store.path

    # --- appending ------------------------------------------------------------------------------------

    def submit(self, raw_tx: bytes, now: int) -> Entry:
        """Check and append a signed operation transaction; raises a RejectedTransaction subclass."""
        self._refuse_local_append()
        with self._lock, self._store.writing():
            self._catch_up()
            entry = self._state.admit(raw_tx, now)
            self._store.append(entry)
        self._state.commit(entry)
        return entry

    def sign_and_submit(self, identity: Identity, op: dict[str, Any], now: int) -> Entry:
        """Sign `op` as `identity` with its next nonce and this ledger's chain id, then submit it."""
        self._refuse_local_append()
        with self._lock, self._store.writing():
            self._catch_up()
            nonce = self._state.nonce_of(identity.key.address)
            raw = operation_transaction(op, nonce).sign(identity.key, self._state.chain_id).encode()
            entry = self._state.admit(raw, now)
            self._store.append(entry)
        self._state.commit(entry)
        return entry

    def _restore_checkpoint(self, trusted: Sequence[PublicKey]) -> None:
        with self._lock, self._store.snapshot():
            found = self._store.latest_checkpoint([k.address for k in trusted])
            if found is None:
                return
            signer, header, signature, blob = found
            try:
                cp = checkpoint.check_signature(header, signature, trusted, signer)
                if cp.chain_id != self._store.chain_id:
                    raise checkpoint.CheckpointRefused(f"checkpoint is for chain id {cp.chain_id}")
                checkpoint.check_links(cp, self._store.links(cp.seq))
                state = checkpoint.restore(blob, cp)
            except checkpoint.CheckpointRefused as exc:
                self.checkpoint_refused = str(exc)
                return
            self._state, self.checkpoint_seq = state, cp.seq
            self._rewinds = self._store.rewinds()

    def write_checkpoint(self, signer: Signer) -> int:
        """Sign and store a checkpoint of the state at the head (replacing `signer`'s previous one)."""
        with self._lock, self._store.writing():
            self._catch_up()
            cp, signature, blob = checkpoint.sign(self._state, signer)
            self._store.save_checkpoint(cp.seq, signer.address, cp.header(), signature, blob)
        return cp.seq

    def _refuse_local_append(self) -> None:
        if self._store.chain_index and type(self) is Ledger:
            raise LedgerError(f"{self.path} is the local index of a ledger on an Ethereum chain: send "
                              "operations to the chain (--ledger URL), they are indexed from its blocks")

    def check(self, raw_tx: bytes, now: int) -> Entry:
        """Every admission check against the current state, appending nothing: the entry it would be."""
        with self._lock:
            self._sync()
            return self._state.admit(raw_tx, now)

    # --- the chain index (chain.py, follow.py) ----------------------------------------------------------

    def indexed_blocks(self) -> list[tuple[int, bytes, int]]:
        """(number, hash, last seq) of the indexed blocks holding entries and the last one, newest first."""
        with self._lock, self._store.snapshot():
            return self._store.blocks()

    def apply_block(self, number: int, block_hash: bytes, timestamp: int,
                    transactions: list[bytes]) -> tuple[list[Entry], list[tuple[bytes, LedgerError]]]:
        """Index one block: each registry transaction, in block order, through every admission check
        (timestamp: the block's). Returns the entries appended and the (tx hash, error) of the refused."""
        return self.apply_blocks([(number, block_hash, timestamp, transactions)])[0]

    def apply_blocks(self, blocks: Sequence[tuple[int, bytes, int, Sequence[bytes]]]
                     ) -> list[tuple[list[Entry], list[tuple[bytes, LedgerError]]]]:
        """`apply_block` for consecutive blocks (number, hash, timestamp, transactions), in one write
        transaction. A block another process following the same chain indexed first is skipped."""
        results: list[tuple[list[Entry], list[tuple[bytes, LedgerError]]]] = []
        with self._lock, self._store.writing():
            self._catch_up()
            stored = self._store.blocks()
            top = stored[0][0] if stored else -1
            state = self._state
            for number, block_hash, timestamp, transactions in blocks:
                admitted: list[Entry] = []
                refused: list[tuple[bytes, LedgerError]] = []
                results.append((admitted, refused))
                if number <= top:
                    continue
                for raw in transactions:
                    try:
                        entry = state.admit(raw, timestamp)
                    except LedgerError as exc:
                        refused.append((keccak(raw), exc))
                        continue
                    self._store.append(entry)
                    state.commit(entry)
                    admitted.append(entry)
                self._store.record_block(number, block_hash, state.head_seq)
                top = number
            self._rewinds = self._store.rewinds()
        return results

    def rewind_to_block(self, number: int) -> tuple[int, bytes]:
        """Undo every block after `number` (a chain reorganisation): their entries are removed and the
        state is rebuilt from the entries that remain. Returns the head (seq, hash) kept."""
        with self._lock, self._store.writing():
            kept = [row for row in self._store.blocks() if row[0] <= number]
            seq = kept[0][2] if kept else 0
            rows = self._store.rows_at([seq]) if seq else []
            head_hash = rows[0].entry_hash if rows else b""
            self._store.rewind(number, seq, head_hash)
            self._rebuild()
            return seq, head_hash

    # --- reading --------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return self._state.chain_id

    @property
    def head_seq(self) -> int:
        with self._lock:
            self._sync()
            return self._state.head_seq

    @property
    def head_hash(self) -> bytes:
        with self._lock:
            self._sync()
            return self._state.head_hash

    @property
    def root_did(self) -> str:
        return str(self._state.root_did)

    def nonce_of(self, address: str) -> int:
        """The next nonce the ledger expects from `address` (0 for an address it has never seen)."""
        with self._lock:
            self._sync()
            return self._state.nonce_of(address)

    def key(self, did: str) -> KeyRecord | None:
        with self._lock:
            self._sync()
            return self._state.keys.get(did)

    def key_by_address(self, address: str) -> KeyRecord | None:
        with self._lock:
            self._sync()
            return self._state.key_by_address(address)

    def keys(self) -> list[KeyRecord]:
        with self._lock:
            self._sync()
            return list(self._state.keys.values())

    def group(self, group_did: str) -> GroupRecord | None:
        with self._lock:
            self._sync()
            return self._state.groups.get(group_did)

    def group_members(self, group_did: str) -> list[KeyRecord]:
        """The group's current members whose keys are not revoked (empty for an unknown group)."""
        with self._lock:
            self._sync()
            group = self._state.groups.get(group_did)
            members = [] if group is None else [self._state.keys[did] for did in group.members]
            return [m for m in members if not m.revoked]

    def artifact(self, urn: str) -> ArtifactRecord | None:
        with self._lock:
            self._sync()
            return self._state.artifacts.get(urn)

    def artifacts(self) -> list[ArtifactRecord]:
        with self._lock:
            self._sync()
            return list(self._state.artifacts.values())

    def policy(self, name: str) -> PolicyRecord | None:
        """Who the policy name belongs to (rule 12); None for a name no artifact was registered under."""
        with self._lock:
            self._sync()
            return self._state.policies.get(name)

    def messages(self, to: str, after_seq: int = 0) -> list[Entry]:
        """MESSAGE entries addressed to `to` (a DID, or an address in any case) with seq > after_seq."""
        key = to.lower() if to.lower().startswith("0x") else to
        with self._lock, self._store.snapshot():
            self._catch_up()
            seqs = [s for s in self._state.inbox.get(key, []) if s > after_seq]
            return [self._entry(row) for row in self._store.rows_at(seqs)]

    def log_anchors(self, node: str) -> list[Entry]:
        """LOG_ANCHOR entries the node `node` (a DID) posted for its decision logs, oldest first."""
        with self._lock, self._store.snapshot():
            self._catch_up()
            seqs = self._state.log_anchors.get(node, [])
            # In slices: a node posts thousands over the years, more than one SQLite statement may bind.
            step = 10_000
            return [self._entry(row) for i in range(0, len(seqs), step)
                    for row in self._store.rows_at(seqs[i:i + step])]

    def entry_of_tx(self, tx_hash: bytes) -> Entry | None:
        """The entry recording the transaction `tx_hash` (its Ethereum transaction id), if any."""
        with self._lock, self._store.snapshot():
            self._catch_up()
            row = self._store.row_of_tx(tx_hash)
            return None if row is None or row.seq > self._state.head_seq else self._entry(row)

    def entries(self, after_seq: int = 0) -> list[Entry]:
        with self._lock, self._store.snapshot():
            self._catch_up()
            rows = self._store.rows(after_seq)
            return [self._entry(row) for row in rows if row.seq <= self._state.head_seq]

    # --- verification ---------------------------------------------------------------------------------

    def verify_chain(self) -> ChainReport:
        """Replay the whole file from genesis into fresh state: every signature, nonce, authority decision
        and hash link. Raises ChainBroken naming the first bad entry's seq."""
        with self._lock, self._store.snapshot():
            fresh = LedgerState(self._store.chain_id, chain_ordered=self._store.chain_index)
            rows = self._store.rows()
            for row in rows:
                _replay(fresh, row)
            _check_head(fresh, self._store.head(), empty_ok=self._store.chain_index)
        return ChainReport(entries=len(rows), head_seq=fresh.head_seq, head_hash=fresh.head_hash)

    def _sync(self) -> None:
        """Catch up with the file, unless no other connection has committed since the last time."""
        version = self._store.data_version()
        if version == self._seen_version:
            return
        with self._store.snapshot():
            self._catch_up()
        self._seen_version = version  # read before catching up: a commit in between only means one more sync

    def _catch_up(self) -> None:
        """Replay entries appended since we last looked (by this or another process); inside a transaction.
        A chain index whose end was rewound meanwhile (a reorganisation) is rebuilt from its entries."""
        if self._store.chain_index and self._store.rewinds() != self._rewinds:
            self._rebuild()
            return
        for row in self._store.rows(self._state.head_seq):
            _replay(self._state, row)
        _check_head(self._state, self._store.head(), empty_ok=self._store.chain_index)

    def _rebuild(self) -> None:
        """Fresh state from every stored entry; inside a transaction."""
        self._state = LedgerState(self._store.chain_id, chain_ordered=self._store.chain_index)
        self.checkpoint_seq = 0
        self._rewinds = self._store.rewinds()
        for row in self._store.rows():
            _replay(self._state, row)
        _check_head(self._state, self._store.head(), empty_ok=self._store.chain_index)

    def _entry(self, row: StoredRow) -> Entry:
        # Rows after a checkpoint were replayed, so their stored op equals the transaction's data; rows up
        # to it were only checked against the hash chain, so their transaction is checked against its
        # hash now and their op, sender and nonce read from it.
        if row.seq <= self.checkpoint_seq:
            if keccak(row.tx) != row.tx_hash:
                raise ChainBroken(row.seq, "stored transaction does not match its hash")
            tx = ethtx.decode(row.tx)
            op, sender, nonce = ops.decode(tx.data), tx.sender().address, tx.nonce
        else:
            op, sender, nonce = strictjson.loads(row.op, max_depth=ops.MAX_JSON_DEPTH), row.sender, row.nonce
        return Entry(seq=row.seq, timestamp=row.timestamp, tx=row.tx, tx_hash=row.tx_hash, sender=sender,
                     nonce=nonce, op=op, prev_hash=row.prev_hash, entry_hash=row.entry_hash)


def _replay(state: LedgerState, row: StoredRow) -> None:
    """Re-admit a stored row into `state` and check that every stored field is what admission produces."""
    expected = state.head_seq + 1
    if row.seq != expected:
        raise ChainBroken(expected, f"entry is missing (the next stored entry is {row.seq})")
    try:
        entry = state.admit(row.tx, row.timestamp)
    except LedgerError as exc:
        raise ChainBroken(row.seq, f"stored transaction is no longer valid: {exc} [{exc.code}]") from exc
    for name, stored, derived in (
        ("transaction hash", row.tx_hash, entry.tx_hash), ("sender", row.sender, entry.sender),
        ("nonce", row.nonce, entry.nonce), ("operation", row.op, op_text(entry)),
        ("previous hash", row.prev_hash, entry.prev_hash), ("entry hash", row.entry_hash, entry.entry_hash),
    ):
        if stored != derived:
            raise ChainBroken(row.seq, f"stored {name} does not match the transaction it records")
    state.commit(entry)


def _check_chain_id(chain_id: object) -> None:
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 1 <= chain_id <= MAX_CHAIN_ID:
        raise LedgerError(f"chain id must be an integer in 1..{MAX_CHAIN_ID}, not {chain_id!r}")


def _check_head(state: LedgerState, recorded: tuple[int, bytes], *, empty_ok: bool = False) -> None:
    seq, head_hash = recorded
    if state.head_seq == 0 and empty_ok and seq == 0:
        return  # a chain index before the chain's genesis entry
    if state.head_seq == 0:
        raise ChainBroken(1, "the ledger has no genesis entry")
    if seq > state.head_seq:
        raise ChainBroken(state.head_seq + 1, f"entries {state.head_seq + 1}..{seq} are missing from the end")
    if seq < state.head_seq:
        raise ChainBroken(seq + 1, f"entries after the recorded head {seq} were added outside the ledger")
    if head_hash != state.head_hash:
        raise ChainBroken(seq, "the recorded head hash does not match the last entry")

