"""SQLite storage for the ledger: an append-only table of hash-chained entries and a little metadata.

Only this module touches sqlite3. It stores what the state machine produced and hands rows back
unchanged; it never decides whether an entry is valid (that is replay's job, in ledger.py).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import rfc8785

from axon.ledger.errors import LedgerStorageError
from axon.ledger.records import Entry

FORMAT = "sopcos-ledger/1"
# The local index of a ledger kept on an Ethereum chain (chain.py): the same entries, plus the blocks they
# came from so that a reorganisation can be undone; it starts empty (the chain's first admitted
# registry transaction is its genesis).
CHAIN_INDEX_FORMAT = "sopcos-ledger-chain-index/1"
BUSY_TIMEOUT_S = 10.0
_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    timestamp INTEGER NOT NULL,
    tx BLOB NOT NULL,
    tx_hash BLOB NOT NULL,
    sender TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    op TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    entry_hash BLOB NOT NULL
);
"""
_CHAIN_SCHEMA = """
CREATE TABLE chain_blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL, last_seq INTEGER NOT NULL);
CREATE INDEX entries_by_tx_hash ON entries (tx_hash);
"""
_CHECKPOINT_SCHEMA = """CREATE TABLE IF NOT EXISTS checkpoints (signer TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    header BLOB NOT NULL, signature BLOB NOT NULL, state BLOB NOT NULL)"""
_COLUMNS = "seq, timestamp, tx, tx_hash, sender, nonce, op, prev_hash, entry_hash"


@dataclass(frozen=True)
class StoredRow:
    """An entries row as read back; `op` is the stored JSON text, untrusted until replayed."""

    seq: int
    timestamp: int
    tx: bytes
    tx_hash: bytes
    sender: str
    nonce: int
    op: str
    prev_hash: bytes
    entry_hash: bytes


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path, chain_index: bool = False) -> None:
        self._conn = conn
        self.path = path
        self.chain_index = chain_index

    @classmethod
    def create(cls, path: str | Path, chain_id: int, *, chain_index: bool = False) -> Store:
        path = Path(path)
        try:  # O_EXCL: never turn an existing file (a ledger or anything else) into a new ledger
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError as exc:
            raise LedgerStorageError(f"{path} already exists; refusing to create a ledger over it") from exc
        except OSError as exc:
            raise LedgerStorageError(f"cannot create {path}: {exc.strerror}") from exc
        store = cls(cls._connect(path), path, chain_index)
        with store._guard("initialise"):
            store._conn.executescript(_SCHEMA + (_CHAIN_SCHEMA if chain_index else ""))
            store._conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", [
                ("format", CHAIN_INDEX_FORMAT if chain_index else FORMAT), ("chain_id", str(chain_id)),
                ("head_seq", "0"), ("head_hash", ""), ("rewinds", "0"),
            ])
        return store

    @classmethod
    def open(cls, path: str | Path) -> Store:
        path = Path(path)
        if not path.is_file():
            raise LedgerStorageError(f"{path} does not exist (create a ledger with `axon ledger init`)")
        store = cls(cls._connect(path), path)
        try:
            fmt = store._meta("format")
        except LedgerStorageError:
            store.close()
            raise LedgerStorageError(f"{path} is not a Sopcos ledger") from None
        if fmt not in (FORMAT, CHAIN_INDEX_FORMAT):
            store.close()
            raise LedgerStorageError(f"{path} is ledger format {fmt!r}; this version reads {FORMAT!r} and "
                                     f"{CHAIN_INDEX_FORMAT!r}")
        store.chain_index = fmt == CHAIN_INDEX_FORMAT
        return store

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            # mode=rw: opening never creates a file; isolation_level=None: transactions are explicit.
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise LedgerStorageError(f"cannot open {path}: {exc}") from exc
        return conn

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LedgerStorageError(f"cannot {what} {self.path}: {exc}") from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: everything read inside sees one consistent state of the file."""
        with self._transaction("BEGIN", "read"):
            yield

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The write lock, held from the first read to the commit, so appends never interleave."""
        with self._transaction("BEGIN IMMEDIATE", "write"):
            yield

    @contextmanager
    def _transaction(self, begin: str, what: str) -> Iterator[None]:
        with self._guard(what):
            self._conn.execute(begin)
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise
        with self._guard(what):
            self._conn.commit()

    def _meta(self, name: str) -> str:
        with self._guard("read"):
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LedgerStorageError(f"{self.path} has no {name!r} in its metadata")
        return str(row[0])

    @property
    def chain_id(self) -> int:
        value = self._meta("chain_id")
        try:
            return int(value)
        except ValueError:
            raise LedgerStorageError(f"{self.path} has an invalid chain id {value!r}") from None

    def data_version(self) -> int:
        """SQLite's count of commits by *other* connections: unchanged means nothing new to read."""
        with self._guard("read"):
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def head(self) -> tuple[int, bytes]:
        """The head (seq, entry hash) recorded with the last append, to notice entries cut off the end."""
        try:
            return int(self._meta("head_seq")), bytes.fromhex(self._meta("head_hash"))
        except ValueError:
            raise LedgerStorageError(f"{self.path} has an invalid head record") from None

    def rewinds(self) -> int:
        """How many times entries were taken off the end for a chain reorganisation (0 for an embedded
        ledger, whose entries are never removed): a reader that sees it change rebuilds its state."""
        try:
            return int(self._conn.execute("SELECT value FROM meta WHERE name = 'rewinds'").fetchone()[0])
        except (TypeError, ValueError, sqlite3.Error):
            return 0

    # --- the chain index's blocks (call inside `writing()` / `snapshot()`) ---------------------------

    def blocks(self) -> list[tuple[int, bytes, int]]:
        """(number, hash, last seq) of the indexed blocks that hold entries, and the last one indexed,
        newest first."""
        with self._guard("read"):
            cur = self._conn.execute("SELECT number, hash, last_seq FROM chain_blocks ORDER BY number DESC")
            return [(int(n), bytes(h), int(s)) for n, h, s in cur]

    def record_block(self, number: int, block_hash: bytes, last_seq: int) -> None:
        """Remember block `number` as indexed; the previous last block is kept only if it added entries."""
        with self._guard("write"):
            top = self._conn.execute("SELECT number, last_seq FROM chain_blocks ORDER BY number DESC "
                                     "LIMIT 2").fetchall()
            if top and (top[0][1] == (top[1][1] if len(top) > 1 else 0)):
                self._conn.execute("DELETE FROM chain_blocks WHERE number = ?", (top[0][0],))
            self._conn.execute("INSERT INTO chain_blocks (number, hash, last_seq) VALUES (?, ?, ?)",
                               (number, block_hash, last_seq))

    def rewind(self, block_number: int, seq: int, head_hash: bytes) -> None:
        """Forget the blocks after `block_number` and the entries after `seq` (head `head_hash`)."""
        with self._guard("write"):
            self._conn.execute("DELETE FROM chain_blocks WHERE number > ?", (block_number,))
            self._conn.execute("DELETE FROM entries WHERE seq > ?", (seq,))
            self._conn.execute(_CHECKPOINT_SCHEMA)
            self._conn.execute("DELETE FROM checkpoints WHERE seq > ?", (seq,))
            self._conn.executemany("UPDATE meta SET value = ? WHERE name = ?", [
                (str(seq), "head_seq"), (head_hash.hex() if seq else "", "head_hash"),
                (str(self.rewinds() + 1), "rewinds"),
            ])

    def rows(self, after_seq: int = 0) -> list[StoredRow]:
        with self._guard("read"):
            cur = self._conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq > ? ORDER BY seq",
                                     (after_seq,))
            return [self._row(r) for r in cur]

    # --- signed checkpoints (checkpoint.py) ----------------------------------------------------------

    def save_checkpoint(self, seq: int, signer: str, header: bytes, signature: bytes, state: bytes) -> None:
        """Keep this checkpoint as `signer`'s only one; call inside `writing()`."""
        with self._guard("write"):
            self._conn.execute(_CHECKPOINT_SCHEMA)
            self._conn.execute("INSERT OR REPLACE INTO checkpoints (seq, signer, header, signature, state) "
                               "VALUES (?, ?, ?, ?, ?)", (seq, signer, header, signature, state))

    def latest_checkpoint(self, signers: Sequence[str]) -> tuple[str, bytes, bytes, bytes] | None:
        """(signer, header, signature, state) of the newest checkpoint by one of `signers`."""
        if not signers:
            return None
        marks = ",".join("?" * len(signers))
        with self._guard("read"):
            table = "SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'"
            if self._conn.execute(table).fetchone() is None:
                return None
            row = self._conn.execute(f"SELECT signer, header, signature, state FROM checkpoints WHERE signer "
                                     f"IN ({marks}) ORDER BY seq DESC LIMIT 1", list(signers)).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]))

    def links(self, upto_seq: int) -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
        """(seq, timestamp, tx_hash, prev_hash, entry_hash) of entries 1..upto_seq, in order."""
        with self._guard("read"):
            yield from self._conn.execute("SELECT seq, timestamp, tx_hash, prev_hash, entry_hash FROM "
                                          "entries WHERE seq <= ? ORDER BY seq", (upto_seq,))

    def row_of_tx(self, tx_hash: bytes) -> StoredRow | None:
        with self._guard("read"):
            r = self._conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE tx_hash = ?", (tx_hash,)).fetchone()
        return None if r is None else self._row(r)

    def rows_at(self, seqs: Sequence[int]) -> list[StoredRow]:
        wanted = list(seqs)
        if not wanted:
            return []
        with self._guard("read"):
            marks = ",".join("?" * len(wanted))
            sql = f"SELECT {_COLUMNS} FROM entries WHERE seq IN ({marks}) ORDER BY seq"
            cur = self._conn.execute(sql, wanted)
            return [self._row(r) for r in cur]

    @staticmethod
    def _row(r: tuple) -> StoredRow:
        seq, timestamp, tx, tx_hash, sender, nonce, op, prev_hash, entry_hash = r
        return StoredRow(seq, timestamp, bytes(tx), bytes(tx_hash), str(sender), nonce, str(op),
                         bytes(prev_hash), bytes(entry_hash))

    def append(self, entry: Entry) -> None:
        """Insert `entry` and move the recorded head; call inside `writing()`."""
        with self._guard("write"):
            self._conn.execute(
                f"INSERT INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.seq, entry.timestamp, entry.tx, entry.tx_hash, entry.sender, entry.nonce,
                 op_text(entry), entry.prev_hash, entry.entry_hash),
            )
            self._conn.executemany("UPDATE meta SET value = ? WHERE name = ?", [
                (str(entry.seq), "head_seq"), (entry.entry_hash.hex(), "head_hash"),
            ])


def op_text(entry: Entry) -> str:
    """The stored, queryable form of the operation: its canonical JSON (the transaction's data)."""
    return rfc8785.dumps(entry.op).decode("utf-8")
