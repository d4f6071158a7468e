"""What a node must remember across its workers and its restarts: the signed requests it accepted, the
SIP-017 message nonces it accepted, and the highest ledger head it verified.

Both live in one SQLite file in the node's store directory (`<store>/node-state.sqlite`, WAL), which
every worker of the node opens: SQLite's locking makes "accept this request once" and "the head only
moves forward" atomic between processes, and the file outlives a restart. Memory per worker would let
a captured request replay on another worker or after a restart, and would let a node that restarted
take a shortened ledger for the real one.

    accepted_requests(digest PRIMARY KEY, expires_at)   digest: what the request signed (auth.py);
                                                        expired rows are pruned on insert
    verified_head(id = 1, seq, hash)                    the highest head this node checked (ledger_link.py)
    message_nonces(nonce PRIMARY KEY, expires_at)       SIP-017 nonces accepted (axon/messaging/receiver.py),
                                                        each until its message would be stale anyway
    message_nonce_floor(id = 1, forgotten_until)        the latest expiry pruned: a message expiring no
                                                        later may repeat a forgotten nonce, so it is refused
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from synapse.service.errors import ServiceError

FILE_NAME = "node-state.sqlite"
Head = tuple[int, bytes]  # a ledger entry: (seq, entry hash)
_BUSY_TIMEOUT_MS = 5000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted_requests (digest BLOB PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS accepted_requests_expiry ON accepted_requests (expires_at);
CREATE TABLE IF NOT EXISTS verified_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
                                          hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS message_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS message_nonces_expiry ON message_nonces (expires_at);
CREATE TABLE IF NOT EXISTS message_nonce_floor (id INTEGER PRIMARY KEY CHECK (id = 1),
                                                forgotten_until INTEGER NOT NULL);
"""
# What accept_message_nonce answers.
NONCE_NEW, NONCE_REPLAYED, NONCE_FORGOTTEN, NONCE_CACHE_FULL = "new", "replayed", "forgotten", "full"


class NodeStateError(ServiceError):
    code = "SYNAPSE-SVC-NODE-STATE"
    status = 503


class NodeState:
    """The node's shared memory (see the module docstring). Opened on first use; safe to call from
    several threads (one connection, one lock) and several processes (SQLite's locks)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")  # an accepted request stays accepted after a crash
                conn.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise NodeStateError(f"cannot open the node state {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading (BEGIN IMMEDIATE): no other worker interleaves."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise NodeStateError(f"cannot {what} in {self.path}: {exc}") from None

    # -- signed requests -----------------------------------------------------------------------------

    def accept_once(self, digest: bytes, expires_at: float, now: float, limit: int) -> bool:
        """Record `digest` as accepted until `expires_at`: True the first time, False if any worker
        already accepted it (a replay). Raises NodeStateError beyond `limit` unexpired entries."""
        with self._write("record the request") as conn:
            conn.execute("DELETE FROM accepted_requests WHERE expires_at < ?", (now,))
            if conn.execute("SELECT 1 FROM accepted_requests WHERE digest = ?", (digest,)).fetchone():
                return False
            if conn.execute("SELECT count(*) FROM accepted_requests").fetchone()[0] >= limit:
                raise NodeStateError(f"{limit} signed requests accepted within the replay window: refusing "
                                     "more until some expire")
            conn.execute("INSERT INTO accepted_requests (digest, expires_at) VALUES (?, ?)",
                         (digest, expires_at))
            return True

    # -- SIP-017 message nonces ------------------------------------------------------------------------

    def accept_message_nonce(self, nonce: str, expires_at: int, now: float, limit: int) -> str:
        """Record a SIP-017 nonce until `expires_at`, in one transaction with pruning the expired ones:
        NONCE_NEW the first time; NONCE_REPLAYED if accepted before (by this run, an earlier one or
        another worker); NONCE_FORGOTTEN if it expires no later than a nonce already pruned (the cache
        cannot vouch for it); NONCE_CACHE_FULL at `limit` unexpired nonces (nothing is forgotten early)."""
        with self._write("record the message nonce") as conn:
            pruned = conn.execute("SELECT max(expires_at) FROM message_nonces WHERE expires_at < ?",
                                  (now,)).fetchone()[0]
            if pruned is not None:
                conn.execute("DELETE FROM message_nonces WHERE expires_at < ?", (now,))
                conn.execute("INSERT INTO message_nonce_floor (id, forgotten_until) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET forgotten_until = "
                             "max(forgotten_until, excluded.forgotten_until)", (pruned,))
            if conn.execute("SELECT 1 FROM message_nonces WHERE nonce = ?", (nonce,)).fetchone():
                return NONCE_REPLAYED
            floor = conn.execute("SELECT forgotten_until FROM message_nonce_floor").fetchone()
            if floor is not None and expires_at <= floor[0]:
                return NONCE_FORGOTTEN
            if conn.execute("SELECT count(*) FROM message_nonces").fetchone()[0] >= limit:
                return NONCE_CACHE_FULL
            conn.execute("INSERT INTO message_nonces (nonce, expires_at) VALUES (?, ?)", (nonce, expires_at))
            return NONCE_NEW

    # -- ledger head ---------------------------------------------------------------------------------

    def verified_head(self) -> Head | None:
        with self._lock:
            try:
                row = self._connection().execute("SELECT seq, hash FROM verified_head").fetchone()
            except sqlite3.Error as exc:
                raise NodeStateError(f"cannot read {self.path}: {exc}") from None
        return None if row is None else (int(row[0]), bytes(row[1]))

    def advance_head(self, check: Callable[[Head | None], Head]) -> Head:
        """Under the file's write lock: `check(remembered)` returns the head to remember (or raises, and
        nothing changes); the remembered head only moves forward. Returns the head now remembered."""
        with self._write("remember the ledger head") as conn:
            row = conn.execute("SELECT seq, hash FROM verified_head").fetchone()
            remembered = None if row is None else (int(row[0]), bytes(row[1]))
            seq, head_hash = check(remembered)
            if remembered is None or seq > remembered[0]:
                conn.execute("INSERT INTO verified_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) "
                             "DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, head_hash))
                remembered = (seq, head_hash)
            return remembered
